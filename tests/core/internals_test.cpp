// Internals of the publish path: a channel's history (herald::detail::history) on its own,
// and two pieces each against the standard one it replaced: the payload check
// (herald::detail::is_json_value) against nlohmann::json::accept, the channel index
// (herald::detail::name_table) against std::unordered_map.
#include <herald/protocol.hpp>
#include <herald/detail/history.hpp>
#include <herald/detail/json_check.hpp>
#include <herald/detail/name_table.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

using namespace std::chrono_literals;

namespace {

// herald rejects three inputs nlohmann accepts: a leading byte-order mark, a NUL byte
// (nlohmann stops reading at it), neither of which is JSON a browser would parse, and
// nesting deeper than herald::detail::max_json_depth.
bool herald_may_differ(const std::string& s) {
    return s.find('\0') != std::string::npos || s.rfind("\xEF\xBB\xBF", 0) == 0 ||
           !herald::detail::json_depth_within(s);
}

void compare(const std::string& s) {
    INFO("input: " << nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace));
    if (herald_may_differ(s)) CHECK_FALSE(herald::detail::is_json_value(s));
    else CHECK(herald::detail::is_json_value(s) == nlohmann::json::accept(s));
}

const std::string max_double_midpoint =
    "1.79769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096"
    "330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730"
    "270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792e308";

} // namespace

TEST_CASE("history: bounded by count and by age, contiguous, answers since()") {
    const herald::history_options three{3, 1000ms}, ten{10, 1000ms};
    herald::detail::history h(three);
    const auto t0 = std::chrono::steady_clock::now();
    auto msg = [](std::uint64_t off) { return herald::protocol::make_message("c", {"e", off}, "1"); };
    for (std::uint64_t i = 1; i <= 5; ++i) h.append(msg(i), t0);
    CHECK(h.size() == 3);  // 3, 4, 5

    std::vector<herald::frame_ptr> out;
    CHECK(h.since(2, 5, out, t0));
    REQUIRE(out.size() == 3);
    CHECK(out.front()->pos.offset == 3);
    out.clear();
    CHECK(h.since(5, 5, out, t0));  // nothing missed
    CHECK(out.empty());
    CHECK_FALSE(h.since(1, 5, out, t0));  // 2 is gone
    CHECK(out.empty());
    CHECK_FALSE(h.since(6, 5, out, t0));  // a cursor ahead of the head is not from this stream

    CHECK_FALSE(h.since(3, 5, out, t0 + 2000ms));  // all aged out
    CHECK(h.empty());

    herald::detail::history g(ten);
    g.append(msg(1), t0);
    g.append(msg(2), t0);
    g.append(msg(7), t0);  // a gap: history restarts so that it stays contiguous
    CHECK(g.size() == 1);
    CHECK_FALSE(g.since(1, 7, out, t0));
    CHECK(g.since(6, 7, out, t0));
}

TEST_CASE("payload check: hand-picked inputs, as nlohmann::json::accept answers them") {
    std::vector<std::string> cases = {
        "", " ", "1", " 1 ", "-0", "-", "01", "-01", "1.", ".5", "1.5", "1e5", "1E+5", "1e-5", "1e", "1e+", "+1",
        "0.0e0", "1.5e", "true", "false", "null", "tru", "nul", "True", "truex", "true false", "\"\"", "\"a\"",
        "\"a", "\"\\\"\"", "\"\\/\\b\\f\\n\\r\\t\\\\\"", "\"\\x\"", "\"\\u0041\"", "\"\\u004\"", "\"\\u00G1\"",
        "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ud83dx\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"", "\"\\uDBFF\\uDFFF\"",
        "\"\x01\"", "\"\x1f\"", "\"\x7f\"", "\"\t\"", "\"\xc3\xa9\"", "\"\xc3\"", "\"\xc0\x80\"", "\"\xc1\xbf\"",
        "\"\xe2\x82\xac\"", "\"\xe0\x80\xaf\"", "\"\xe0\xa0\x80\"", "\"\xed\xa0\x80\"", "\"\xed\x9f\xbf\"",
        "\"\xf0\x9f\x98\x80\"", "\"\xf0\x8f\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"",
        "\"\xff\"", "\"\x80\"", "\"\xe2\x82\"", "[]", "[ ]", "[1]", "[1,]", "[,1]", "[1 2]", "[1,2]", "[[[]]]", "[[]",
        "[]]", "{}", "{ }", "{\"a\":1}", "{\"a\" : 1 , \"b\":[true,null]}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}",
        "{,}", "{1:1}", "{\"a\":1 \"b\":2}", "{\"a\":1}}", "{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}}}", "[1]x",
        "\n\r\t [1] \n", "\f1", "1\v", "/*c*/1", "[1]//", "1e308", "1e309", "-1e309", "1e-400", "1e99999999999999999999",
        "1e-99999999999999999999", "0e99999", "0.0000001e315", "0.1e310", "10e308", "1.7976931348623157e308",
        "1.7976931348623158e308", "1.7976931348623159e308", max_double_midpoint,
        max_double_midpoint.substr(0, max_double_midpoint.size() - 5) + "1e308",
        max_double_midpoint.substr(0, max_double_midpoint.size() - 5) + "3e308",
        std::string(308, '9'), std::string(309, '9'), "1" + std::string(308, '0'), "1" + std::string(309, '0'),
        "-" + std::string(400, '9'), "0." + std::string(400, '9'), "18446744073709551616", "-9223372036854775809",
        std::string(1000, '[') + std::string(1000, ']'), std::string(1000, '[') + std::string(999, ']'),
        std::string(100, '{') , R"({"item":4242,"field":"title","by":"alice","rev":17})",
        std::string("\xEF\xBB\xBF") + "1", std::string("1\0x", 3), std::string("\0", 1), std::string("\"a\0\"", 4),
    };
    for (const auto& s : cases) compare(s);
}

TEST_CASE("payload check: random mutations of JSON documents, as nlohmann::json::accept answers them") {
    const std::vector<std::string> seeds = {
        R"({"item":4242,"field":"title","by":"alice","rev":17,"tags":["a","b"],"ok":true,"none":null})",
        R"([1,-2.5e3,0,"\u00e9\ud83d\ude00",{"k":[{},[]]},false])",
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "-0.0E+00", "[[[[1]]],{\"a\":{\"b\":[null]}}]",
    };
    const std::vector<std::string> pieces = {
        "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u", "\\ud83d", "\\ude00", "\\u00", "/", " ", "\t", "\n", "-", "+",
        ".", "e", "E", "0", "1", "9", "true", "fals", "null", "x", std::string("\0", 1), "\x1f", "\x7f", "\x80",
        "\xbf", "\xc2", "\xc3\xa9", "\xe0", "\xe0\xa0", "\xed\xa0\x80", "\xf0\x9f", "\xf4\x90", "\xf5", "\xff",
        "\xEF\xBB\xBF", "e308", "e309", "1.7976931348623158", "99999999999999999999",
    };
    std::mt19937 rng(20240521);
    auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    const int rounds = 200000;
    int accepted = 0;
    for (int i = 0; i < rounds; ++i) {
        std::string s = seeds[pick(seeds.size())];
        for (int m = 1 + static_cast<int>(pick(3)); m > 0; --m) {
            const std::size_t at = pick(s.size() + 1);
            switch (pick(4)) {
            case 0: s.insert(at, pieces[pick(pieces.size())]); break;
            case 1: if (at < s.size()) s.erase(at, 1 + pick(3)); break;
            case 2: if (at < s.size()) s.replace(at, 1, pieces[pick(pieces.size())]); break;
            default: if (at < s.size()) s.insert(at, s.substr(at, 1 + pick(8))); break;
            }
        }
        const bool expected = !herald_may_differ(s) && nlohmann::json::accept(s);
        if (herald::detail::is_json_value(s) != expected) compare(s);  // reports the input
        accepted += expected;
    }
    INFO("accepted: " << accepted << " of " << rounds);
    CHECK(accepted > rounds / 50);  // the mutations leave enough valid documents to matter
}

TEST_CASE("channel index: finds, inserts and erases as std::unordered_map does, through collisions and wrap-around") {
    struct named {
        std::string name;
    };
    herald::detail::name_table<named> table;
    std::unordered_map<std::string, std::uint64_t> reference;  // name -> hash
    std::mt19937 rng(7);
    // Few distinct hashes, some at the top of the range: long probe runs that wrap around.
    auto hash_of = [](int n) { return n % 5 == 0 ? ~std::uint64_t(0) - std::uint64_t(n % 3) : std::uint64_t(n % 11); };
    for (int step = 0; step < 20000; ++step) {
        const int n = std::uniform_int_distribution<int>(0, 300)(rng);
        const std::string name = "ch." + std::to_string(n);
        const std::uint64_t h = hash_of(n);
        const bool present = reference.count(name) > 0;
        auto* found = table.find(name, h);
        REQUIRE((found != nullptr) == present);
        if (found) REQUIRE((*found)->name == name);
        if (!present && rng() % 3 != 0) {
            CHECK(table.insert(h, std::make_shared<named>(named{name}))->name == name);
            reference.emplace(name, h);
        } else if (present) {
            table.erase(name, h);
            reference.erase(name);
        }
        REQUIRE(table.size() == reference.size());
    }
    std::size_t seen = 0;
    table.for_each([&](const std::shared_ptr<named>& v) {
        ++seen;
        CHECK(reference.count(v->name) == 1);
    });
    CHECK(seen == reference.size());
    for (const auto& [name, h] : reference) CHECK(table.find(name, h) != nullptr);
}
