// Everything in the core and the in-memory transport, compiled as C++20 (see CMakeLists).
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

int include_all_b();

int main() {
    herald::hub h;
    herald::rule_authorizer rules;  // without one, every subscribe is refused
    rules.allow(herald::action::subscribe, "a");
    h.set_authorizer(rules);
    herald::transport::inmemory mem(h);
    auto c = mem.connect();
    c.subscribe("a");
    h.publish("a", "1");
    std::size_t n = 0;
    c.poll([&](const herald::frame&) { ++n; });
    return (n == 2 && include_all_b() == 1) ? 0 : 1;  // subscribed + message
}
