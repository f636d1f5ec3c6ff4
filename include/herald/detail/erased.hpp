// herald — type erasure for the hub's backplane and authorizer.
#pragma once

#include <herald/authorizer.hpp>
#include <herald/backplane.hpp>
#include <herald/frame.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace herald::detail {

// Their requirements are checked at compile time where they are installed (the hub's
// constructor, set_authorizer); the hub itself stays one non-template class.

struct backplane_concept {
    virtual ~backplane_concept() = default;
    virtual void attach(backplane_sink&) = 0;
    virtual void detach() = 0;
    virtual void publish(std::string, std::string, publish_handler) = 0;
    // The optional synchronous publish: false when the backplane has none.
    virtual bool publish_now(std::string_view, std::string_view, position&, std::error_code&) = 0;
    virtual void fetch(std::string, std::optional<position>, fetch_handler) = 0;
    virtual std::string_view name() const noexcept = 0;
    virtual backplane_status status() const = 0;
    // Presence: false when the backplane keeps none (local): the hub is the whole truth then.
    virtual bool shares_presence() const noexcept = 0;
    virtual void presence_join(std::string, std::string, std::string) = 0;
    virtual void presence_leave(std::string, std::string) = 0;
    virtual void presence(std::string, presence_handler) = 0;
};

template <class B>
struct backplane_model final : backplane_concept {
    explicit backplane_model(B b) : bp(std::move(b)) {}
    void attach(backplane_sink& s) override { bp.attach(s); }
    void detach() override { bp.detach(); }
    void publish(std::string c, std::string d, publish_handler h) override { bp.publish(std::move(c), std::move(d), std::move(h)); }
    bool publish_now(std::string_view c, std::string_view d, position& out, std::error_code& ec) override {
        if constexpr (has_sync_publish_v<B>) {
            out = bp.publish(c, d, ec);
            return true;
        } else {
            return false;
        }
    }
    void fetch(std::string c, std::optional<position> since, fetch_handler h) override {
        bp.fetch(std::move(c), std::move(since), std::move(h));
    }
    std::string_view name() const noexcept override { return B::name; }
    backplane_status status() const override {
        if constexpr (has_status<B>::value) return bp.status();
        else return {};
    }
    bool shares_presence() const noexcept override { return has_presence_v<B>; }
    void presence_join(std::string c, std::string who, std::string info) override {
        if constexpr (has_presence_v<B>) bp.presence_join(std::move(c), std::move(who), std::move(info));
    }
    void presence_leave(std::string c, std::string who) override {
        if constexpr (has_presence_v<B>) bp.presence_leave(std::move(c), std::move(who));
    }
    void presence(std::string c, presence_handler h) override {
        if constexpr (has_presence_v<B>) bp.presence(std::move(c), std::move(h));
        else h({}, {});
    }
    B bp;
};

struct authorizer_concept {
    virtual ~authorizer_concept() = default;
    virtual std::optional<principal> authenticate(const request_info&) const = 0;
    virtual bool may(const principal&, action, std::string_view) const = 0;
    virtual bool may_presence(const principal&, std::string_view) const = 0;
};

template <class A>
struct authorizer_model final : authorizer_concept {
    explicit authorizer_model(A x) : a(std::move(x)) {}
    std::optional<principal> authenticate(const request_info& r) const override { return a.authenticate(r); }
    bool may(const principal& p, action w, std::string_view c) const override { return a.may(p, w, c); }
    bool may_presence(const principal& p, std::string_view c) const override {
        if constexpr (has_presence_check<A>::value) return a.may_presence(p, c);
        else return false;  // presence is off unless the authorizer says who may have it
    }
    A a;
};

} // namespace herald::detail
