// herald-fuzz-client-frame: a herald.v1 client frame, parsed (protocol::parse_request) and then
// applied to real hub sessions as a transport applies it (herald::peer::apply), under a
// rule_authorizer. Checks: no crash, no hang, and
//  - a frame that parses names a valid channel (but a refresh, which names none), and a
//    publish carries one JSON value;
//  - every frame the hub queues in answer is itself valid JSON.
#include <herald/authorizer.hpp>
#include <herald/hub.hpp>
#include <herald/peer.hpp>
#include <herald/protocol.hpp>
#include <herald/detail/json_check.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace {

herald::hub_options options() {
    herald::hub_options o;
    o.history.max_messages = 4;                        // bounded memory over millions of inputs ...
    o.history.max_age = std::chrono::milliseconds(0);  // ... and sweep() forgets the channels
    o.log = {};
    return o;
}

herald::hub& the_hub() {
    static herald::hub hub(options());
    static const bool ready = [] {
        herald::rule_authorizer auth;
        auth.allow(herald::action::subscribe, "public.**")
            .allow(herald::action::subscribe, "project.*.items")
            .allow(herald::action::subscribe, "user.{principal}.**")
            .allow(herald::action::publish, "project.*.comments")
            .allow(herald::action::publish, "user.{principal}.inbox");
        hub.set_authorizer(std::move(auth));
        return true;
    }();
    (void)ready;
    return hub;
}

// The one place the harness applies a client frame, as every transport does (herald::peer).
void apply_client_frame(herald::peer& client, std::string_view text) {
    client.apply(text);
}

void check_answers(const herald::session_ptr& s) {
    std::vector<herald::frame_ptr> frames;
    s->take(frames);
    for (const herald::frame_ptr& f : frames)
        if (!nlohmann::json::accept(f->text)) __builtin_trap();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    std::error_code ec;
    const herald::protocol::request r = herald::protocol::parse_request(text, ec);
    using kind = herald::protocol::request::kind;
    if (!ec && r.type != kind::pong && r.type != kind::refresh) {  // a refresh names no channel
        if (herald::validate_channel(r.channel)) __builtin_trap();
        if (r.type == kind::publish && !herald::detail::is_json_value(r.data))
            __builtin_trap();
    }

    herald::hub& hub = the_hub();
    static std::uint64_t runs = 0;
    for (const char* who : {"alice", ""}) {  // a signed-in user and an anonymous one
        herald::peer client(hub, herald::principal{who}, [] {});
        apply_client_frame(client, text);
        apply_client_frame(client, text);  // the same frame again: resubscribe, republish
        check_answers(client.session());
        client.close();
    }
    if (++runs % 1024 == 0) hub.sweep();
    return 0;
}
