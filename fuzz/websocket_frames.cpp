// herald-fuzz-websocket-frames: WebSocket frames from a client, read as the WebSocket
// transport reads them (transports/websocket/include/herald/transport/websocket.hpp,
// websocket::stream::on_read): websocketpp's hybi13 processor, server side, after a valid
// handshake, with the transport's message size limit, consume() over a copy of the bytes
// (it unmasks in place) and get_message() when a message is ready; close frames as the
// transport reads them. Checks: no crash, no hang, never more bytes used than given, no
// message over the limit. Fed twice: in one read, and in two (two_reads.hpp).
#include "two_reads.hpp"

#include <websocketpp/close.hpp>
#include <websocketpp/config/core.hpp>
#include <websocketpp/http/request.hpp>
#include <websocketpp/http/response.hpp>
#include <websocketpp/processors/hybi13.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace {

using config = websocketpp::config::core;  // herald::transport::detail::websocket_config
using processor = websocketpp::processor::hybi13<config>;
using message_ptr = config::message_type::ptr;

constexpr std::size_t max_message_bytes = 64 * 1024;  // net::server_options::max_request_bytes

const std::string handshake =
    "GET /herald/ws HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: herald.v1\r\nOrigin: http://localhost:8080\r\n\r\n";

class ws_reader {
public:
    ws_reader() : proc_(false, true, messages(), rng()) {
        proc_.set_max_message_size(max_message_bytes);
        websocketpp::http::parser::request req;
        websocketpp::http::parser::response res;
        req.consume(handshake.data(), handshake.size());
        if (!req.ready() || websocketpp::processor::get_websocket_version(req) != proc_.get_version() ||
            proc_.validate_handshake(req) || proc_.process_handshake(req, "herald.v1", res))
            __builtin_trap();  // the harness's own handshake must pass
    }

    // websocket::stream::on_read once the connection is open. @returns false once failed.
    bool feed(const char* data, std::size_t n) {
        if (failed_ || n == 0) return !failed_;
        std::string scratch(data, n);
        auto* p = reinterpret_cast<std::uint8_t*>(scratch.data());
        std::size_t left = n;
        while (left > 0 && !failed_) {
            std::error_code ec;
            const std::size_t used = proc_.consume(p, left, ec);
            if (ec) {
                (void)websocketpp::processor::error::to_ws(ec);
                failed_ = true;
                break;
            }
            if (used > left) __builtin_trap();
            p += used;
            left -= used;
            if (proc_.ready()) {
                if (message_ptr m = proc_.get_message()) dispatch(m);
            } else if (used == 0) {
                break;
            }
        }
        return !failed_;
    }

private:
    static std::shared_ptr<config::con_msg_manager_type> messages() {
        static auto m = std::make_shared<config::con_msg_manager_type>();
        return m;
    }
    static config::rng_type& rng() {
        static config::rng_type r;
        return r;
    }

    void dispatch(const message_ptr& m) {
        const std::string& payload = m->get_payload();
        if (payload.size() > max_message_bytes) __builtin_trap();
        if (m->get_opcode() == websocketpp::frame::opcode::close) {  // websocket::stream::on_close_frame
            std::error_code ec;
            (void)websocketpp::close::extract_code(payload, ec);
            if (!ec) (void)websocketpp::close::extract_reason(payload, ec);
            failed_ = true;  // the transport answers and ends the connection
        }
    }

    processor proc_;
    bool failed_ = false;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    feed_in_one_and_two_reads<ws_reader>(data, size);
    return 0;
}
