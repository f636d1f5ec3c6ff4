// A CMS that follows a channel in-process: the smallest use of herald.
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

#include <iostream>

int main() {
    herald::hub hub;
    herald::rule_authorizer rules;  // without one, every subscribe is refused
    rules.allow(herald::action::subscribe, "projects");
    hub.set_authorizer(rules);
    herald::transport::inmemory mem(hub);
    auto job = mem.connect();
    job.subscribe("projects");
    hub.publish("projects", R"({"item":1})");
    int messages = 0;
    job.poll([&](const herald::frame& f) { messages += f.type == herald::frame_type::message; });
    std::cout << "consumer saw " << messages << " message(s)\n";
    return messages == 1 ? 0 : 1;
}
