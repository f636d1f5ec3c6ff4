// The websocketpp broadcast server a user would write by hand: websocketpp's Asio transport,
// a std::set<connection_hdl> per channel, send(string) to each subscriber. It speaks the
// benchmark's subset of herald.v1 (subscribe, publish -> message to the channel's
// subscribers + published to the publisher) so that every server does the same work.
//   herald-bench-wspp --port N        (prints "port N", runs until SIGTERM/SIGINT)
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <nlohmann/json.hpp>

#include <csignal>
#include <iostream>
#include <map>
#include <set>
#include <string>

using server = websocketpp::server<websocketpp::config::asio>;
using hdl = websocketpp::connection_hdl;

int main(int argc, char** argv) {
    const unsigned short port = argc > 2 ? static_cast<unsigned short>(std::stoi(argv[2])) : 9002;
    server s;
    s.clear_access_channels(websocketpp::log::alevel::all);
    s.clear_error_channels(websocketpp::log::elevel::all);
    s.init_asio();
    s.set_reuse_addr(true);
    s.set_listen_backlog(4096);

    std::map<std::string, std::set<hdl, std::owner_less<hdl>>> channels;
    std::map<hdl, std::set<std::string>, std::owner_less<hdl>> followed;

    s.set_message_handler([&](hdl h, server::message_ptr m) {
        nlohmann::json j = nlohmann::json::parse(m->get_payload(), nullptr, false);
        if (!j.is_object()) return;
        const std::string type = j.value("type", "");
        const std::string channel = j.value("channel", "");
        websocketpp::lib::error_code ec;
        if (type == "subscribe") {
            channels[channel].insert(h);
            followed[h].insert(channel);
            s.send(h, nlohmann::json{{"type", "subscribed"}, {"channel", channel}}.dump(), websocketpp::frame::opcode::text, ec);
        } else if (type == "publish") {
            const std::string text = nlohmann::json{{"type", "message"}, {"channel", channel}, {"data", j["data"]}}.dump();
            for (const hdl& to : channels[channel]) s.send(to, text, websocketpp::frame::opcode::text, ec);
            s.send(h, nlohmann::json{{"type", "published"}, {"channel", channel}}.dump(), websocketpp::frame::opcode::text, ec);
        }
    });
    s.set_close_handler([&](hdl h) {
        auto it = followed.find(h);
        if (it == followed.end()) return;
        for (const std::string& c : it->second) channels[c].erase(h);
        followed.erase(it);
    });

    asio::signal_set signals(s.get_io_service(), SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code&, int) {
        websocketpp::lib::error_code ec;
        s.stop_listening(ec);
        s.stop();
    });
    s.listen(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    s.start_accept();
    std::cout << "port " << port << std::endl;
    s.run();
    return 0;
}
