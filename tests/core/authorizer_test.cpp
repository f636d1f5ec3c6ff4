// Who a client is and what it may do: rule_authorizer's patterns, and the request_info
// (headers, cookies, query) an authenticate function reads.
#include <herald/authorizer.hpp>

#include <catch2/catch.hpp>

#include <optional>

TEST_CASE("authorizer: rules match by segment, {principal} only for that principal") {
    using herald::action;
    herald::principal alice{"alice"}, anon{};
    herald::rule_authorizer auth;
    auth.allow(action::subscribe, "projects.**").allow(action::subscribe, "user.{principal}.*")
        .allow(action::publish, "project.*.comments");
    CHECK(auth.may(alice, action::subscribe, "projects.7"));
    CHECK(auth.may(alice, action::subscribe, "projects.7.items"));
    CHECK_FALSE(auth.may(alice, action::subscribe, "projects"));  // ** is one or more segments
    CHECK(auth.may(alice, action::subscribe, "user.alice.notifications"));
    CHECK_FALSE(auth.may(alice, action::subscribe, "user.bob.notifications"));
    CHECK_FALSE(auth.may(alice, action::subscribe, "user.alice.notifications.extra"));
    CHECK_FALSE(auth.may(anon, action::subscribe, "user..notifications"));
    CHECK_FALSE(auth.may(anon, action::subscribe, "user.alice.notifications"));
    CHECK(auth.may(anon, action::publish, "project.3.comments"));
    CHECK_FALSE(auth.may(alice, action::publish, "projects.7"));  // not allowed for publish
    CHECK(auth.authenticate({})->anonymous());

    herald::request_info r;
    r.target = "/herald/ws?token=t0k&x=1";
    r.headers = {{"Cookie", "a=1; cms_session=abc123; z=9"}, {"Origin", "http://127.0.0.1:8080"}};
    CHECK(r.cookie("cms_session") == "abc123");
    CHECK(r.cookie("cms") == "");
    CHECK(r.header("origin") == "http://127.0.0.1:8080");
    CHECK(r.query("token") == "t0k");
    CHECK(r.query("y") == "");

    herald::rule_authorizer by_cookie([](const herald::request_info& req) -> std::optional<herald::principal> {
        if (req.cookie("cms_session") != "abc123") return std::nullopt;
        return herald::principal{"alice"};
    });
    CHECK(by_cookie.authenticate(r)->id == "alice");
    CHECK_FALSE(by_cookie.authenticate(herald::request_info{}));
}
