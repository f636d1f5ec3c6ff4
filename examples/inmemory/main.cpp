// herald in one process: a CMS publishes, a background job follows the channel, loses its
// connection, and resumes from its cursor without missing or repeating a message.
#include <herald.hpp>
#include <herald/transport/inmemory.hpp>

#include <iostream>
#include <string>

int main() {
    herald::hub hub;                       // local backplane; refuses every client until told
    herald::rule_authorizer auth;          // the job may follow project items, not publish
    auth.allow(herald::action::subscribe, "project.*.items");
    hub.set_authorizer(auth);
    herald::transport::inmemory mem(hub);

    auto job = mem.connect();              // e.g. a search indexer following project changes
    job.subscribe("project.42.items");

    auto print = [](const herald::frame& f) {
        if (f.type == herald::frame_type::subscribed)
            std::cout << "subscribed to " << f.channel << " at offset " << f.pos.offset
                      << (f.recovered ? "" : " (resync: history could not fill the gap)") << '\n';
        if (f.type == herald::frame_type::message)
            std::cout << "  " << f.channel << " #" << f.pos.offset << ' ' << f.data() << '\n';
    };

    hub.publish("project.42.items", R"({"item":"Homepage copy","status":"in review"})");
    hub.publish("project.42.items", R"({"item":"Hero image","status":"approved"})");
    job.poll(print);

    const herald::position cursor = *job.cursor("project.42.items");
    job.close();                           // the job restarts...
    hub.publish("project.42.items", R"({"item":"Homepage copy","status":"published"})");

    auto resumed = mem.connect();          // ...and resumes where it was
    resumed.subscribe("project.42.items", cursor);
    resumed.poll(print);
    std::cout << "cursor now " << resumed.cursor("project.42.items")->epoch << ':'
              << resumed.cursor("project.42.items")->offset << '\n';
}
