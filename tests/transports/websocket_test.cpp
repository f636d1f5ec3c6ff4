// The WebSocket transport in process, through the public transport interface: an upgrade
// offered on a test_connection, the client's frames fed to it, the server's frames read back
// from the bytes it wrote. No socket, no Node (those: tests/protocol).
#include <herald/transport/websocket.hpp>

#include "support/recorder.hpp"
#include "support/test_connection.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using json = nlohmann::json;
using herald::test::make_request;
using herald::test::offer;
using herald::test::test_connection;

namespace {

// ---- RFC 6455 framing, the client's half ------------------------------------------------

enum opcode : std::uint8_t { text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA };

/// A final client frame: masked, as RFC 6455 requires of clients.
std::string client_frame(std::uint8_t op, const std::string& payload) {
    const std::uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    std::string f(1, static_cast<char>(0x80 | op));
    const std::size_t n = payload.size();
    if (n < 126) {
        f += static_cast<char>(0x80 | n);
    } else if (n < 65536) {
        f += static_cast<char>(0x80 | 126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n & 0xff);
    } else {
        f += static_cast<char>(0x80 | 127);
        for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((n >> shift) & 0xff);
    }
    f.append(reinterpret_cast<const char*>(mask), 4);
    for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
    return f;
}

struct server_frame {
    std::uint8_t op = 0;
    bool fin = false;
    std::string payload;
    json as_json() const { return json::parse(payload); }
    std::uint16_t close_code() const {
        REQUIRE(payload.size() >= 2);
        return static_cast<std::uint16_t>((static_cast<std::uint8_t>(payload[0]) << 8) | static_cast<std::uint8_t>(payload[1]));
    }
};

/// The server's side of the conversation: the handshake answer, then its frames (unmasked).
struct conversation {
    std::string head;
    std::vector<server_frame> frames;

    explicit conversation(const std::string& written) {
        const std::size_t end = written.find("\r\n\r\n");
        REQUIRE(end != std::string::npos);
        head = written.substr(0, end + 2);
        std::size_t i = end + 4;
        while (i + 2 <= written.size()) {
            server_frame f;
            const auto b0 = static_cast<std::uint8_t>(written[i]), b1 = static_cast<std::uint8_t>(written[i + 1]);
            f.fin = b0 & 0x80;
            f.op = b0 & 0x0f;
            REQUIRE((b1 & 0x80) == 0);  // a server never masks
            std::size_t n = b1 & 0x7f, at = i + 2;
            const int ext = n == 126 ? 2 : n == 127 ? 8 : 0;
            if (ext) {
                REQUIRE(at + ext <= written.size());
                n = 0;
                for (int k = 0; k < ext; ++k) n = (n << 8) | static_cast<std::uint8_t>(written[at + k]);
                at += ext;
            }
            REQUIRE(at + n <= written.size());  // whole frames only
            f.payload = written.substr(at, n);
            frames.push_back(std::move(f));
            i = at + n;
        }
        REQUIRE(i == written.size());
    }

    /// Whether the handshake answer has header `line` (e.g. "sec-websocket-protocol: herald.v1"),
    /// names compared case-insensitively.
    bool head_has(const std::string& line) const {
        std::string h = head;
        for (char& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        std::string l = line;
        for (char& ch : l) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        return h.find("\r\n" + l + "\r\n") != std::string::npos;
    }
    /// The herald frames (text messages), in order.
    std::vector<json> herald_frames() const {
        std::vector<json> out;
        for (const auto& f : frames)
            if (f.op == text) out.push_back(f.as_json());
        return out;
    }
    /// The offsets of the `message` frames, in order.
    std::vector<std::uint64_t> offsets() const {
        std::vector<std::uint64_t> out;
        for (const json& j : herald_frames())
            if (j["type"] == "message") out.push_back(j["offset"]);
        return out;
    }
    std::vector<std::string> types() const {
        std::vector<std::string> out;
        for (const json& j : herald_frames()) out.push_back(j["type"]);
        return out;
    }
    const server_frame& last() const {
        REQUIRE_FALSE(frames.empty());
        return frames.back();
    }
};

// ---- a transport made as basic_server makes it ------------------------------------------

struct websocket_fixture {
    herald::server_options opts;
    herald::hub hub{opts.hub};
    herald::net::transport_context ctx{hub, opts};
    herald::transport::websocket::options ws_opts;
    std::unique_ptr<herald::transport::websocket> ws;

    explicit websocket_fixture(const std::function<void(herald::server_options&)>& tweak = {})
        : opts(tweaked(tweak)) {
        herald::rule_authorizer auth;
        auth.allow(herald::action::subscribe, "c").allow(herald::action::publish, "c");
        hub.set_authorizer(std::move(auth));
        ctx.server_id = "test";
        ctx.transports = {"websocket", "longpoll"};
        ws = std::make_unique<herald::transport::websocket>(ctx, ws_opts);
    }

    static herald::server_options tweaked(const std::function<void(herald::server_options&)>& tweak) {
        herald::server_options o;
        o.heartbeat = 1000ms;
        o.hub.log = nullptr;
        if (tweak) tweak(o);
        return o;
    }

    /// The upgrade request a browser sends (RFC 6455's sample key), plus `extra` headers.
    static herald::http_request upgrade_request(std::vector<std::pair<std::string, std::string>> extra = {}) {
        std::vector<std::pair<std::string, std::string>> h = {
            {"Host", "127.0.0.1:8080"},
            {"Upgrade", "websocket"},
            {"Connection", "Upgrade"},
            {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
            {"Sec-WebSocket-Version", "13"},
            {"Sec-WebSocket-Protocol", "herald.v1"},
        };
        for (auto& e : extra) h.push_back(std::move(e));
        return make_request("GET", "/herald/ws", std::move(h));
    }

    /// A connection upgraded and welcomed.
    std::shared_ptr<test_connection> open() {
        auto c = test_connection::make();
        REQUIRE(offer(*ws, c, upgrade_request()));
        c->run();
        REQUIRE(c->upgraded());
        return c;
    }

    /// A connection upgraded and subscribed to "c".
    std::shared_ptr<test_connection> subscribed() {
        auto c = open();
        c->receive(client_frame(text, R"({"type":"subscribe","channel":"c","id":1})"));
        c->run();
        REQUIRE(conversation(c->written).types().back() == "subscribed");
        return c;
    }
};

} // namespace

TEST_CASE("websocket: a valid upgrade gets 101 with herald.v1 and a welcome frame") {
    websocket_fixture t;
    auto c = test_connection::make();
    REQUIRE(offer(*t.ws, c, t.upgrade_request()));
    c->run();
    CHECK(c->upgrades == 1);
    CHECK(c->responses.empty());  // the 101 is the transport's own bytes, not an HTTP answer
    conversation talk(c->written);
    CHECK(talk.head.rfind("HTTP/1.1 101 ", 0) == 0);
    CHECK(talk.head_has("sec-websocket-protocol: herald.v1"));
    CHECK(talk.head_has("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));  // RFC 6455 section 1.3
    REQUIRE(talk.frames.size() == 1);
    CHECK(talk.frames[0].op == text);
    CHECK(talk.frames[0].fin);
    json welcome = talk.frames[0].as_json();
    CHECK(welcome["type"] == "welcome");
    CHECK(welcome["protocol"] == "herald.v1");
    CHECK(welcome["heartbeat"] == 1000);
    CHECK(t.hub.stats().sessions == 1);
}

TEST_CASE("websocket: a subscribe frame gets subscribed, a publish arrives as a text frame of the frame's text") {
    websocket_fixture t;
    auto c = t.open();
    c->receive(client_frame(text, R"({"type":"subscribe","channel":"c","id":7})"));
    c->run();
    std::vector<json> frames = conversation(c->written).herald_frames();
    REQUIRE(frames.size() == 2);
    CHECK(frames[1]["type"] == "subscribed");
    CHECK(frames[1]["channel"] == "c");
    CHECK(frames[1]["id"] == 7);
    CHECK(frames[1]["offset"] == 0);

    const herald::position p = t.hub.publish("c", herald::test::payload(1));
    c->run();
    conversation talk(c->written);
    REQUIRE(talk.frames.size() == 3);
    CHECK(talk.last().op == text);
    CHECK(talk.last().fin);
    CHECK(talk.last().payload == herald::protocol::make_message("c", p, herald::test::payload(1))->text);
    CHECK(talk.last().as_json()["offset"] == 1);

    // Many publishes, one wake: all of them, in order.
    for (int i = 2; i <= 20; ++i) t.hub.publish("c", herald::test::payload(i));
    c->run();
    CHECK(conversation(c->written).offsets() == herald::test::range(1, 20));
}

TEST_CASE("websocket: a stalled peer that misses too many publishes is closed 4008 slow_consumer") {
    websocket_fixture t([](herald::server_options& o) { o.hub.session.max_queued_messages = 8; });
    auto c = t.subscribed();
    c->write_budget(5);  // the peer stops reading 5 bytes into the next frame
    t.hub.publish("c", herald::test::payload(1));
    c->run();
    REQUIRE(c->writing());
    for (int i = 2; i <= 50; ++i) t.hub.publish("c", herald::test::payload(i));
    c->run();
    CHECK(t.hub.stats().slow_consumers == 1);

    c->peer_reads();  // it reads again: what was on its way, then the close
    c->run();
    conversation talk(c->written);
    CHECK(talk.last().op == close);
    CHECK(talk.last().close_code() == 4008);
    CHECK(talk.offsets() == std::vector<std::uint64_t>{1});  // the rest is for the resume
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("websocket: a binary frame is closed 1003") {
    websocket_fixture t;
    auto c = t.open();
    c->receive(client_frame(binary, "\x01\x02"));
    c->run();
    conversation talk(c->written);
    CHECK(talk.last().op == close);
    CHECK(talk.last().close_code() == 1003);
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("websocket: a message over max_request_bytes is closed 1009") {
    websocket_fixture t([](herald::server_options& o) { o.max_request_bytes = 1024; });
    auto c = t.open();
    const std::string big = R"({"type":"publish","channel":"c","data":")" + std::string(2000, 'x') + "\"}";
    c->receive(client_frame(text, big));
    c->run();
    conversation talk(c->written);
    CHECK(talk.last().op == close);
    CHECK(talk.last().close_code() == 1009);
    CHECK_FALSE(c->open());  // a protocol failure ends the connection once the close is out
    CHECK(t.hub.stats().published == 0);
}

TEST_CASE("websocket: a quiet peer is pinged after a heartbeat and closed 4000 after two") {
    websocket_fixture t;  // heartbeat 1 s
    auto c = t.open();
    const auto start = herald::net::clock::now();
    c->tick(start + 1100ms);
    conversation pinged(c->written);
    CHECK(pinged.types().back() == "ping");  // herald's ping, for the page
    CHECK(pinged.last().op == ping);         // WebSocket's, which a browser answers itself
    CHECK(c->open());

    c->tick(start + 3500ms);
    conversation talk(c->written);
    CHECK(talk.last().op == close);
    CHECK(talk.last().close_code() == 4000);
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("websocket: the server is never quiet for longer than the heartbeat it announced (a ping goes a tick early)") {
    websocket_fixture t([](herald::server_options& o) { o.heartbeat = 5000ms; });
    auto c = t.open();
    const auto start = herald::net::clock::now();
    const std::size_t welcomed = conversation(c->written).frames.size();
    // Quiet for 3.9 s: the next tick (by 4.9 s) still comes within the heartbeat.
    c->tick(start + 3900ms);
    CHECK(conversation(c->written).frames.size() == welcomed);
    // Quiet for 4 s: the next tick might come after 5 s, past the heartbeat, so the ping goes now.
    c->tick(start + 4000ms);
    conversation pinged(c->written);
    REQUIRE(pinged.frames.size() > welcomed);
    CHECK(pinged.types().back() == "ping");
}

TEST_CASE("websocket: a drain sends reconnect, then closes 4001") {
    websocket_fixture t;
    auto c = t.subscribed();
    c->drain(1500ms);
    c->run();
    conversation talk(c->written);
    REQUIRE(talk.frames.size() >= 2);
    const server_frame& reconnect = talk.frames[talk.frames.size() - 2];
    CHECK(reconnect.op == text);
    CHECK(reconnect.as_json()["type"] == "reconnect");
    CHECK(reconnect.as_json()["after"] == 1500);
    CHECK(talk.last().op == close);
    CHECK(talk.last().close_code() == 4001);
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("websocket: a client's close is echoed and ends the session, a ping gets its pong") {
    websocket_fixture t;
    auto c = t.open();
    c->receive(client_frame(ping, "hi"));
    conversation ponged(c->written);
    CHECK(ponged.last().op == pong);
    CHECK(ponged.last().payload == "hi");

    c->receive(client_frame(close, std::string("\x03\xe8", 2)));  // 1000
    c->run();
    conversation talk(c->written);
    CHECK(talk.last().op == close);
    CHECK(talk.last().close_code() == 1000);
    CHECK_FALSE(c->open());
    CHECK(t.hub.stats().sessions == 0);
}

TEST_CASE("websocket: a refused origin gets 403 and no upgrade") {
    websocket_fixture t([](herald::server_options& o) { o.allowed_origins = {"https://cms.example"}; });
    auto c = test_connection::make();
    REQUIRE(offer(*t.ws, c, t.upgrade_request({{"Origin", "https://evil.example"}})));
    c->run();
    CHECK(c->upgrades == 0);
    REQUIRE(c->responses.size() == 1);
    CHECK(c->responses[0].status == 403);
    CHECK(herald::test::error_code_of(c->responses[0]) == "forbidden");
    CHECK(t.hub.stats().sessions == 0);

    auto ok = test_connection::make();
    REQUIRE(offer(*t.ws, ok, t.upgrade_request({{"Origin", "https://cms.example"}})));
    CHECK(ok->upgrades == 1);
}

TEST_CASE("websocket: a GET without Upgrade (a proxy dropped it) gets 426 and no upgrade") {
    websocket_fixture t;
    auto c = test_connection::make();
    REQUIRE(offer(*t.ws, c, make_request("GET", "/herald/ws", {{"Host", "127.0.0.1:8080"}})));
    c->run();
    CHECK(c->upgrades == 0);
    REQUIRE(c->responses.size() == 1);
    CHECK(c->responses[0].status == 426);
    CHECK_FALSE(herald::test::error_code_of(c->responses[0]).empty());
    CHECK_FALSE(c->responses[0].keep_alive);
    CHECK_FALSE(c->open());

    // Other paths are not the transport's.
    auto other = test_connection::make();
    CHECK_FALSE(offer(*t.ws, other, make_request("GET", "/elsewhere", {{"Host", "127.0.0.1:8080"}})));
}
