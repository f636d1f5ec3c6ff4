// herald.v1 as it goes over the wire: channel names, error codes and their wire names, the
// frames a server sends and the requests a client sends (docs/protocol.md).
#include <herald.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

using namespace std::chrono_literals;
using json = nlohmann::json;

TEST_CASE("channel names: valid ones pass, every invalid one gets error::invalid_channel") {
    for (const char* ok : {"projects", "project.42.items", "user.alice.notifications", "a", "A-b_c:d.e", "x.1"})
        CHECK_FALSE(herald::validate_channel(ok));
    const std::string too_long(herald::max_channel_length + 1, 'a');
    for (std::string bad : {std::string(), std::string("."), std::string("a."), std::string(".a"),
                            std::string("a..b"), std::string("has space"), std::string("quote\""),
                            std::string("back\\slash"), std::string("slash/"), std::string("star*"),
                            std::string("\xc3\xa9t\xc3\xa9"), std::string("nul\0x", 5), too_long}) {
        INFO("channel: " << bad);
        CHECK(herald::validate_channel(bad) == herald::error::invalid_channel);
    }
    CHECK(herald::is_valid_channel(std::string(herald::max_channel_length, 'a')));
}

TEST_CASE("errors: herald's category names each code, wire names are snake_case") {
    std::error_code ec = herald::error::slow_consumer;
    CHECK(ec.category().name() == std::string("herald"));
    CHECK(ec.message() == "slow consumer: outbound queue over its cap");
    CHECK(std::string(herald::to_wire(ec)) == "slow_consumer");
    CHECK(std::string(herald::to_wire(std::make_error_code(std::errc::io_error))) == "internal_error");
    for (int e = 1; e <= static_cast<int>(herald::error::timed_out); ++e) {
        const auto code = static_cast<herald::error>(e);
        CHECK(std::string(herald::to_wire(code)) != "internal_error");
        CHECK(herald::make_error_code(code).message() != "unknown herald error");
    }
}

TEST_CASE("protocol: server frames are valid JSON with the documented fields") {
    auto m = herald::protocol::make_message("project.7", {"ep0ch", 42}, R"({"title":"Launch \"v2\"","n":[1,2]})");
    json j = json::parse(m->text);
    CHECK(j["type"] == "message");
    CHECK(j["channel"] == "project.7");
    CHECK(j["epoch"] == "ep0ch");
    CHECK(j["offset"] == 42);
    CHECK(j["data"]["title"] == "Launch \"v2\"");
    CHECK(m->data() == R"({"title":"Launch \"v2\"","n":[1,2]})");

    json s = json::parse(herald::protocol::make_subscribed("c", {"e", 3}, false, 9)->text);
    CHECK(s == json({{"type", "subscribed"}, {"channel", "c"}, {"epoch", "e"}, {"offset", 3}, {"recovered", false}, {"id", 9}}));

    auto err = herald::protocol::make_error(herald::error::forbidden, "user.bob.x", 4);
    json e = json::parse(err->text);
    CHECK(e["type"] == "error");
    CHECK(e["code"] == "forbidden");
    CHECK(e["channel"] == "user.bob.x");
    CHECK(e["id"] == 4);
    CHECK(err->data() == "forbidden");
    // A channel that is not a valid name is never echoed (it could carry anything).
    CHECK_FALSE(json::parse(herald::protocol::make_error(herald::error::invalid_channel, "bad\"name")->text).contains("channel"));

    json w = json::parse(herald::protocol::make_welcome("s1", 25s, {"websocket", "longpoll"}, "srv")->text);
    CHECK(w["protocol"] == "herald.v1");
    CHECK(w["heartbeat"] == 25000);
    CHECK(w["transports"] == json({"websocket", "longpoll"}));
    json r = json::parse(herald::protocol::make_reconnect(1500ms)->text);
    CHECK(r == json({{"type", "reconnect"}, {"after", 1500}, {"reason", "shutdown"}}));
    CHECK(json::parse(herald::protocol::make_published("c", {"e", 5}, 2)->text)["offset"] == 5);
    CHECK(json::parse(herald::protocol::make_unsubscribed("c", 3)->text)["type"] == "unsubscribed");
}

TEST_CASE("protocol: client requests parse, and each bad one gets its error") {
    std::error_code ec;
    auto r = herald::protocol::parse_request(R"({"type":"subscribe","channel":"p","since":{"epoch":"e","offset":7},"id":3})", ec);
    REQUIRE_FALSE(ec);
    CHECK(r.type == herald::protocol::request::kind::subscribe);
    CHECK(r.channel == "p");
    REQUIRE(r.since);
    CHECK(*r.since == herald::position{"e", 7});
    CHECK(r.id == 3);

    r = herald::protocol::parse_request(R"({"type":"publish","channel":"p","data":{"a" : 1}})", ec);
    REQUIRE_FALSE(ec);
    CHECK(r.data == R"({"a":1})");

    struct bad_case { const char* text; herald::error expected; };
    for (auto [text, expected] : {
             bad_case{"not json", herald::error::malformed_frame},
             bad_case{"[1,2]", herald::error::malformed_frame},
             bad_case{"{\"channel\":\"p\"}", herald::error::malformed_frame},
             bad_case{"{\"type\":7}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"dance\"}", herald::error::unknown_frame_type},
             bad_case{"{\"type\":\"subscribe\"}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"bad name\"}", herald::error::invalid_channel},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"p\",\"since\":{\"epoch\":\"e\"}}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"p\",\"since\":{\"epoch\":\"e\",\"offset\":-1}}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"p\",\"id\":\"x\"}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"publish\",\"channel\":\"p\"}", herald::error::malformed_frame},
         }) {
        INFO(text);
        herald::protocol::parse_request(text, ec);
        CHECK(ec == expected);
    }
    herald::protocol::parse_request(R"({"type":"pong"})", ec);
    CHECK_FALSE(ec);
}
