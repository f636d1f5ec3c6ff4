// herald-netload — the load generator of benchmarks/net: many WebSocket (or long-poll)
// clients per thread on Asio, its own client framing, and a check of every delivery.
//
// One publisher connection sends `publish` frames (WebSocket: {"type":"publish",...}; long-poll:
// herald's POST /herald/publish or a Socket.IO event over polling) and the server relays them.
// Every message's data carries the channel's sequence number `s`, a message id `m`, the
// channel index `c` and the send time `t` (steady clock, ns; for paced/bursty runs the time
// the frame was written, for fixed-rate runs the time it was due, so that a late publisher
// does not hide latency). Each subscriber checks that its channels' sequence numbers arrive
// in order, once: gaps, late (duplicate or out-of-order) and missing deliveries are counted
// and printed, never dropped.
//
// Flow: `--window W` keeps at most W publishes not yet acknowledged by the server (the way a
// CMS publishes: it waits for publish() to return; paced W=4, bursty W=256), and at most
// `--max-inflight` messages not yet delivered to every subscriber (so that a server that
// acknowledges faster than it delivers meets backpressure instead of growing queues; the
// times the publisher waited on it are counted as `publisher_stalls`). Long-poll publishers
// send one request at a time (W=1). `--rate R` publishes R messages/s on a timer (open loop).
// Output: one JSON line on stdout (see benchmarks/net/README.md).
#include <asio.hpp>
#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace netload {

using clk = std::chrono::steady_clock;
inline std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch()).count());
}

// ---- latency histogram: log-linear, 32 sub-buckets per power of two (~3 %) ---------------
struct histogram {
    static constexpr int sub_bits = 5;
    std::vector<std::uint64_t> counts = std::vector<std::uint64_t>(64 << sub_bits, 0);
    std::uint64_t total = 0;
    static std::size_t index(std::uint64_t v) {
        if (v < (1u << sub_bits)) return static_cast<std::size_t>(v);
        const int e = 63 - __builtin_clzll(v);  // >= sub_bits
        const int shift = e - sub_bits;
        return static_cast<std::size_t>(((shift + 1) << sub_bits) + ((v >> shift) & ((1u << sub_bits) - 1)));
    }
    static std::uint64_t value(std::size_t i) {  // upper-middle of the bucket
        if (i < (1u << sub_bits)) return i;
        const int shift = static_cast<int>(i >> sub_bits) - 1;
        const std::uint64_t m = (i & ((1u << sub_bits) - 1)) | (1u << sub_bits);
        return (m << shift) + ((1ull << shift) >> 1);
    }
    void record(std::uint64_t v) { ++counts[index(v)]; ++total; }
    void merge(const histogram& o) {
        for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
        total += o.total;
    }
    double percentile_us(double q) const {
        if (!total) return 0;
        const auto want = static_cast<std::uint64_t>(q * static_cast<double>(total - 1)) + 1;
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < counts.size(); ++i) {
            seen += counts[i];
            if (seen >= want) return static_cast<double>(value(i)) / 1000.0;
        }
        return 0;
    }
};

// ---- configuration ------------------------------------------------------------------------
enum class transport_kind { websocket, herald_longpoll, socketio };

struct config {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::string path = "/herald/ws";
    transport_kind transport = transport_kind::websocket;
    std::string label;  // e.g. "fanout-1000-paced", echoed in the output
    std::string server_name;
    int server_pid = 0;  // for server CPU time and RSS
    unsigned connections = 100;
    unsigned groups = 0;  // 0: one channel "bench" for all; else personal u.i + group g.(i % groups)
    unsigned window = 4;          // publishes not yet acknowledged by the server
    unsigned max_inflight = 1024; // messages not yet delivered to every subscriber
    double rate = 0;       // messages/s (open loop) when > 0
    double warmup = 1.0;   // seconds, not measured
    double duration = 5.0; // seconds measured
    double drain = 5.0;    // seconds to wait for the last deliveries
    unsigned payload = 100;
    unsigned threads = 1;
    unsigned connect_concurrency = 64;
    bool idle = false;          // memory scenario: connect, subscribe, measure RSS, leave
    bool idle_subscribe = true; // idle connections subscribe to their personal channel
    double hold = 0;            // memory scenario: keep the connections open this long after measuring
    double setup_timeout = 120;
};

// ---- state shared by every thread ----------------------------------------------------------
struct channel_info {
    std::string name;
    std::uint32_t subscribers = 0;
    std::uint64_t published = 0;  // publisher thread only; read after the drain
};

struct shared_state {
    explicit shared_state(const config& c) : cfg(c), ring(ring_size) {}
    static constexpr std::size_t ring_size = 1 << 16;
    config cfg;
    std::vector<channel_info> channels;
    std::vector<std::atomic<std::uint32_t>> ring;  // message id % ring_size -> deliveries still owed
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> ready{0};     // subscribers whose subscriptions are confirmed
    std::atomic<std::uint64_t> failed{0};    // connections that failed or closed early
    std::atomic<bool> measuring{false}, stopping{false};
    std::function<void()> on_complete;       // posted to the publisher's thread
    asio::io_context* publisher_ioc = nullptr;
    std::atomic<bool> complete_posted{false};
};

// Per-thread counters (written by one thread; read by main after the threads stop, or as
// relaxed snapshots for the measurement window).
struct counters {
    std::atomic<std::uint64_t> delivered{0};
    std::uint64_t late = 0, gaps = 0, wrong_channel = 0, malformed = 0, acks = 0, reads = 0;
    histogram latency;
};

struct worker {
    asio::io_context ioc{1};
    counters stats;
    shared_state* shared = nullptr;
    std::array<char, 1 << 18> buffer;  // every connection of this thread reads into it
};

// ---- parsing helpers -------------------------------------------------------------------------
inline bool parse_uint_after(std::string_view s, std::string_view key, std::uint64_t& out, std::size_t from = 0) {
    const std::size_t at = s.find(key, from);
    if (at == std::string_view::npos) return false;
    std::size_t i = at + key.size();
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
    std::uint64_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + static_cast<std::uint64_t>(s[i++] - '0');
    out = v;
    return true;
}

struct delivery {
    std::uint64_t seq = 0, mid = 0, channel = 0, sent = 0;
};
// The data of a benchmark message, wherever the server put its keys.
inline bool parse_delivery(std::string_view data, delivery& d) {
    return parse_uint_after(data, "\"s\":", d.seq) && parse_uint_after(data, "\"m\":", d.mid) &&
           parse_uint_after(data, "\"c\":", d.channel) && parse_uint_after(data, "\"t\":", d.sent);
}

// What every subscriber (WebSocket or poller) does with a delivery.
struct subscriber_state {
    std::uint32_t channel[2] = {0, 0};
    std::uint64_t next[2] = {1, 1};
    std::uint8_t nchannels = 1;

    void deliver(worker& w, std::string_view data, std::uint64_t now) {
        delivery d;
        if (!parse_delivery(data, d)) { ++w.stats.malformed; return; }
        int slot = -1;
        for (int i = 0; i < nchannels; ++i)
            if (channel[i] == d.channel) slot = i;
        if (slot < 0) { ++w.stats.wrong_channel; return; }
        if (d.seq == next[slot]) {
            ++next[slot];
        } else if (d.seq > next[slot]) {
            w.stats.gaps += d.seq - next[slot];
            next[slot] = d.seq + 1;
        } else {
            ++w.stats.late;  // a duplicate, or one that comes after a later one
            return;
        }
        w.stats.delivered.store(w.stats.delivered.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        if (w.shared->measuring.load(std::memory_order_relaxed) && now > d.sent) w.stats.latency.record(now - d.sent);
        auto& slot_left = w.shared->ring[d.mid % shared_state::ring_size];
        if (slot_left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            w.shared->completed.fetch_add(1, std::memory_order_acq_rel);
            if (w.shared->on_complete && !w.shared->complete_posted.exchange(true))
                asio::post(*w.shared->publisher_ioc, [s = w.shared] {
                    s->complete_posted = false;
                    s->on_complete();
                });
        }
    }
    // Deliveries still owed at the end: the channel's published count past what arrived.
    std::uint64_t missing(const shared_state& s) const {
        std::uint64_t m = 0;
        for (int i = 0; i < nchannels; ++i) {
            const std::uint64_t got = next[i] - 1;
            const std::uint64_t pub = s.channels[channel[i]].published;
            if (pub > got) m += pub - got;
        }
        return m;
    }
};

// ---- a TCP client connection with a read loop into the thread's buffer ----------------------
class client : public std::enable_shared_from_this<client> {
public:
    client(worker& w) : w_(w), socket_(w.ioc) {}
    virtual ~client() = default;

    void connect(std::function<void(bool)> connected) {
        asio::ip::tcp::endpoint ep(asio::ip::make_address(w_.shared->cfg.host), w_.shared->cfg.port);
        socket_.async_connect(ep, [self = shared_from_this(), connected = std::move(connected)](std::error_code ec) {
            if (!ec) {
                std::error_code ignored;
                self->socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
                self->socket_.non_blocking(true, ignored);
            }
            connected(!ec);
            if (!ec) self->on_connected();
        });
    }

    void close() {
        std::error_code ec;
        closed_ = true;
        socket_.close(ec);
    }

    subscriber_state sub;

protected:
    virtual void on_connected() = 0;
    // Consumes complete units from `data`; @returns the bytes consumed.
    virtual std::size_t on_bytes(const char* data, std::size_t n) = 0;

    void fail() {
        if (closed_) return;
        if (!w_.shared->stopping) w_.shared->failed.fetch_add(1);
        close();
    }

    void send(std::string_view bytes) {
        out_.append(bytes);
        flush();
    }
    void flush() {
        if (writing_ || out_.empty() || closed_) return;
        writing_ = true;
        inflight_.swap(out_);
        asio::async_write(socket_, asio::buffer(inflight_), [self = shared_from_this()](std::error_code ec, std::size_t) {
            self->writing_ = false;
            self->inflight_.clear();
            if (ec) { self->fail(); return; }
            self->flush();
        });
    }

    void read() {
        if (closed_) return;
        socket_.async_wait(asio::ip::tcp::socket::wait_read, [self = shared_from_this()](std::error_code ec) {
            if (ec) { self->fail(); return; }
            self->read_available();
        });
    }

    worker& w_;
    asio::ip::tcp::socket socket_;
    std::string out_, inflight_, in_;
    bool writing_ = false, closed_ = false;

private:
    void read_available() {
        for (int rounds = 0; rounds < 8 && !closed_; ++rounds) {
            std::error_code ec;
            const std::size_t n = socket_.read_some(asio::buffer(w_.buffer), ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) break;
            if (ec) { fail(); return; }
            ++w_.stats.reads;
            if (in_.empty()) {
                const std::size_t used = on_bytes(w_.buffer.data(), n);
                if (used < n) in_.assign(w_.buffer.data() + used, n - used);
            } else {
                in_.append(w_.buffer.data(), n);
                const std::size_t used = on_bytes(in_.data(), in_.size());
                in_.erase(0, used);
            }
            if (n < w_.buffer.size()) break;
        }
        if (in_.capacity() > 65536 && in_.size() < 4096) in_.shrink_to_fit();
        read();
    }
};

// ---- WebSocket client -----------------------------------------------------------------------
class ws_client final : public client {
public:
    enum class role { subscriber, publisher };
    ws_client(worker& w, role r, std::vector<std::string> subscribe, std::function<void()> ready)
        : client(w), role_(r), subscribe_(std::move(subscribe)), ready_(std::move(ready)) {}

    // Sends one text frame, masked with a fixed key (the server unmasks it like any other).
    // `now = false` leaves it queued for the next send (the publisher writes a window's worth
    // of publishes in one write, as any client that batches would).
    void send_text(std::string_view payload, bool now = true) {
        static constexpr unsigned char key[4] = {0x37, 0xa1, 0x5c, 0x09};
        char hdr[14];
        std::size_t h = 0;
        hdr[h++] = static_cast<char>(0x81);
        const std::size_t n = payload.size();
        if (n < 126) hdr[h++] = static_cast<char>(0x80 | n);
        else if (n < 65536) { hdr[h++] = static_cast<char>(0x80 | 126); hdr[h++] = static_cast<char>(n >> 8); hdr[h++] = static_cast<char>(n); }
        else { hdr[h++] = static_cast<char>(0x80 | 127); for (int i = 7; i >= 0; --i) hdr[h++] = static_cast<char>(std::uint64_t(n) >> (8 * i)); }
        for (unsigned char k : key) hdr[h++] = static_cast<char>(k);
        const std::size_t at = out_.size();
        out_.append(hdr, h);
        out_.append(payload);
        char* p = out_.data() + at + h;
        for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<char>(p[i] ^ key[i & 3]);
        if (now) flush();
    }
    void send_queued() { flush(); }

private:
    void on_connected() override {
        const auto& cfg = w_.shared->cfg;
        std::string req = "GET " + cfg.path + " HTTP/1.1\r\nHost: " + cfg.host + ":" + std::to_string(cfg.port) +
                          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n";
        send(req);
        read();
    }

    std::size_t on_bytes(const char* data, std::size_t n) override {
        std::size_t used = 0;
        if (!open_) {
            const std::string_view s(data, n);
            const std::size_t end = s.find("\r\n\r\n");
            if (end == std::string_view::npos) return 0;
            if (s.substr(0, 12).find("101") == std::string_view::npos) { fail(); return n; }
            open_ = true;
            used = end + 4;
            for (const std::string& c : subscribe_) send_text("{\"type\":\"subscribe\",\"channel\":\"" + c + "\"}");
            if (subscribe_.empty() && ready_) { auto r = std::move(ready_); r(); }
        }
        const std::uint64_t now = now_ns();
        while (n - used >= 2) {
            const auto* p = reinterpret_cast<const unsigned char*>(data + used);
            const std::size_t avail = n - used;
            const unsigned op = p[0] & 0x0f;
            std::uint64_t len = p[1] & 0x7f;
            std::size_t h = 2;
            if (len == 126) {
                if (avail < 4) break;
                len = (std::uint64_t(p[2]) << 8) | p[3];
                h = 4;
            } else if (len == 127) {
                if (avail < 10) break;
                len = 0;
                for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
                h = 10;
            }
            if (p[1] & 0x80) { fail(); return n; }  // servers do not mask
            if (avail < h + len) break;
            const std::string_view payload(data + used + h, static_cast<std::size_t>(len));
            used += h + static_cast<std::size_t>(len);
            if (op == 0x1) on_text(payload, now);
            else if (op == 0x9) send_pong(payload);
            else if (op == 0x8) { if (!w_.shared->stopping) fail(); return n; }
        }
        return used;
    }

    void on_text(std::string_view t, std::uint64_t now) {
        const std::size_t d = t.find("\"data\":");
        if (d != std::string_view::npos) {
            sub.deliver(w_, t.substr(d + 7), now);
            return;
        }
        if (t.find("\"type\":\"subscribed\"") != std::string_view::npos) {
            if (++subscribed_ == subscribe_.size() && ready_) { auto r = std::move(ready_); r(); }
        } else if (t.find("\"type\":\"published\"") != std::string_view::npos) {
            ++w_.stats.acks;
            if (on_ack) on_ack();
        } else if (t.find("\"type\":\"ping\"") != std::string_view::npos) {
            send_text("{\"type\":\"pong\"}");
        } else if (t.find("\"type\":\"error\"") != std::string_view::npos) {
            ++w_.stats.malformed;
        }
    }

    void send_pong(std::string_view payload) {
        std::string copy(payload);
        static constexpr unsigned char key[4] = {0x37, 0xa1, 0x5c, 0x09};
        std::string f;
        f += static_cast<char>(0x8a);
        f += static_cast<char>(0x80 | copy.size());
        for (unsigned char k : key) f += static_cast<char>(k);
        for (std::size_t i = 0; i < copy.size(); ++i) f += static_cast<char>(copy[i] ^ key[i & 3]);
        send(f);
    }

public:
    std::function<void()> on_ack;

private:
    role role_;
    std::vector<std::string> subscribe_;
    std::function<void()> ready_;
    std::size_t subscribed_ = 0;
    bool open_ = false;
};

// ---- HTTP/1.1 keep-alive client (long-poll) ----------------------------------------------------
class http_client : public client {
public:
    using client::client;

protected:
    void request(std::string_view method, const std::string& target, std::string_view body, std::string_view type = "text/plain") {
        const auto& cfg = w_.shared->cfg;
        std::string r;
        r.reserve(200 + body.size());
        r += method; r += ' '; r += target;
        r += " HTTP/1.1\r\nHost: "; r += cfg.host; r += ':'; r += std::to_string(cfg.port);
        r += "\r\nConnection: keep-alive\r\nContent-Type: "; r += type;
        r += "\r\nContent-Length: "; r += std::to_string(body.size()); r += "\r\n\r\n";
        r += body;
        send(r);
    }
    virtual void on_response(int status, std::string_view body) = 0;

private:
    std::size_t on_bytes(const char* data, std::size_t n) override {
        std::size_t used = 0;
        while (used < n && !closed_) {
            const std::string_view s(data + used, n - used);
            const std::size_t end = s.find("\r\n\r\n");
            if (end == std::string_view::npos) break;
            const std::string_view head = s.substr(0, end);
            int status = 0;
            if (head.size() > 12) status = std::atoi(std::string(head.substr(9, 3)).c_str());
            std::size_t length = 0;
            bool have_length = false;
            for (std::size_t i = 0; i < head.size();) {
                std::size_t eol = head.find("\r\n", i);
                if (eol == std::string_view::npos) eol = head.size();
                const std::string_view line = head.substr(i, eol - i);
                if (line.size() > 15 && (line[0] | 0x20) == 'c' && (line[8] | 0x20) == 'l') {
                    std::string lower(line.substr(0, 15));
                    for (auto& ch : lower) ch = static_cast<char>(ch | 0x20);
                    if (lower == "content-length:") { length = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10); have_length = true; }
                }
                i = eol + 2;
            }
            if (!have_length) { fail(); return n; }  // chunked answers are not expected here
            if (s.size() < end + 4 + length) break;
            used += end + 4 + length;
            on_response(status, s.substr(end + 4, length));
        }
        return used;
    }
};

// herald long-poll: POST /herald/poll with the cursor, parse frames, poll again.
class herald_poller final : public http_client {
public:
    herald_poller(worker& w, std::string channel, std::function<void()> ready)
        : http_client(w), channel_(std::move(channel)), ready_(std::move(ready)) {}

private:
    void on_connected() override { read(); poll(); }
    void poll() {
        if (w_.shared->stopping) return;
        std::string body = "{\"channels\":{\"" + channel_ + "\":";
        if (epoch_.empty()) body += "null";
        else body += "{\"epoch\":\"" + epoch_ + "\",\"offset\":" + std::to_string(offset_) + "}";
        body += "},\"timeout\":20000}";
        request("POST", "/herald/poll", body);
    }
    void on_response(int status, std::string_view body) override {
        if (status != 200) { ++w_.stats.malformed; fail(); return; }
        const std::uint64_t now = now_ns();
        std::size_t at = 0;
        for (;;) {
            const std::size_t f = body.find("{\"type\":\"", at);
            if (f == std::string_view::npos) break;
            std::size_t next = body.find("{\"type\":\"", f + 9);
            const std::string_view frame = body.substr(f, next == std::string_view::npos ? std::string_view::npos : next - f);
            at = f + 9;
            const bool message = frame.compare(9, 8, "message\"") == 0;
            const bool subscribed = frame.compare(9, 11, "subscribed\"") == 0;
            if (!message && !subscribed) continue;
            const std::size_t e = frame.find("\"epoch\":\"");
            if (e != std::string_view::npos) {
                const std::size_t q = frame.find('"', e + 9);
                epoch_.assign(frame.substr(e + 9, q - e - 9));
            }
            std::uint64_t off = 0;
            if (parse_uint_after(frame, "\"offset\":", off)) offset_ = off;
            if (message) {
                const std::size_t d = frame.find("\"data\":");
                if (d != std::string_view::npos) sub.deliver(w_, frame.substr(d + 7), now);
            } else if (ready_) {
                auto r = std::move(ready_);
                r();
            }
        }
        poll();
    }
    std::string channel_, epoch_;
    std::uint64_t offset_ = 0;
    std::function<void()> ready_;
};

// Socket.IO v4 over Engine.IO polling only: handshake (room in the query), connect the
// namespace, then GET polls; a `2` (ping) is answered with a POSTed `3`.
class sio_poller final : public http_client {
public:
    sio_poller(worker& w, std::string room, std::function<void()> ready)
        : http_client(w), room_(std::move(room)), ready_(std::move(ready)) {}

    /// Publisher use: POSTs one `publish` event (answered "ok").
    void emit_publish(std::string_view json) {
        std::string body = "42[\"publish\",";
        body += json;
        body += ']';
        state_ = state::posting;
        request("POST", base() + "&sid=" + sid_, body);
    }
    std::function<void()> on_posted;

private:
    enum class state { handshake, connecting, polling, posting, pinging };
    std::string base() const { return "/socket.io/?EIO=4&transport=polling"; }
    void on_connected() override {
        read();
        request("GET", base() + (room_.empty() ? "" : "&room=" + room_), "");
    }
    void poll() {
        if (w_.shared->stopping) return;
        state_ = state::polling;
        request("GET", base() + "&sid=" + sid_, "");
    }
    void on_response(int status, std::string_view body) override {
        if (status != 200) { ++w_.stats.malformed; fail(); return; }
        switch (state_) {
        case state::handshake: {
            const std::size_t s = body.find("\"sid\":\"");
            if (body.empty() || body[0] != '0' || s == std::string_view::npos) { fail(); return; }
            sid_.assign(body.substr(s + 7, body.find('"', s + 7) - s - 7));
            state_ = state::connecting;
            request("POST", base() + "&sid=" + sid_, "40");
            return;
        }
        case state::connecting: poll(); return;
        case state::pinging: poll(); return;
        case state::posting:
            if (on_posted) on_posted();
            return;
        case state::polling: break;
        }
        const std::uint64_t now = now_ns();
        bool ping = false;
        std::size_t at = 0;
        while (at <= body.size()) {
            std::size_t end = body.find('\x1e', at);
            if (end == std::string_view::npos) end = body.size();
            const std::string_view pkt = body.substr(at, end - at);
            at = end + 1;
            if (pkt.empty()) continue;
            if (pkt == "2") ping = true;
            else if (pkt.compare(0, 2, "40") == 0) {
                if (ready_) { auto r = std::move(ready_); r(); }
            } else if (pkt.compare(0, 13, "42[\"message\",") == 0) {
                sub.deliver(w_, pkt.substr(13), now);
            }
        }
        if (ping && !w_.shared->stopping) {
            state_ = state::pinging;
            request("POST", base() + "&sid=" + sid_, "3");
            return;
        }
        // The publisher (no room) stops polling once connected: a held GET would hold its
        // POSTs behind it on the one keep-alive connection (runs are shorter than the
        // 45 s Engine.IO gives a session without polls).
        if (room_.empty()) return;
        poll();
    }
    std::string room_, sid_;
    std::function<void()> ready_;
    state state_ = state::handshake;
};

// herald long-poll publisher: POST /herald/publish, one at a time on a keep-alive connection.
class herald_http_publisher final : public http_client {
public:
    herald_http_publisher(worker& w, std::function<void()> ready) : http_client(w), ready_(std::move(ready)) {}
    void publish(std::string_view channel, std::string_view data) {
        std::string body = "{\"channel\":\"";
        body += channel;
        body += "\",\"data\":";
        body += data;
        body += '}';
        request("POST", "/herald/publish", body, "application/json");
    }
    std::function<void()> on_posted;

private:
    void on_connected() override {
        read();
        if (ready_) { auto r = std::move(ready_); r(); }
    }
    void on_response(int status, std::string_view) override {
        if (status != 200) ++w_.stats.malformed;
        else ++w_.stats.acks;
        if (on_posted) on_posted();
    }
    std::function<void()> ready_;
};

// ---- the run ------------------------------------------------------------------------------------
struct cpu_sample {
    double self = 0, server = 0;
};
inline double self_cpu() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}
inline double proc_cpu(int pid) {
    if (!pid) return 0;
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(f, line);
    const std::size_t close = line.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream in(line.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
    }
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}
inline long proc_rss_kib(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return 0;
}

class runner {
public:
    explicit runner(const config& c) : s_(c), workers_(std::max(1u, c.threads)) {
        for (auto& w : workers_) { w = std::make_unique<worker>(); w->shared = &s_; }
        const auto& cfg = s_.cfg;
        if (cfg.groups == 0) {
            s_.channels.push_back({"bench", cfg.connections, 0});
        } else {
            for (unsigned g = 0; g < cfg.groups; ++g) s_.channels.push_back({"g." + std::to_string(g), 0, 0});
            for (unsigned i = 0; i < cfg.connections; ++i) {
                s_.channels.push_back({"u." + std::to_string(i), 1, 0});
                ++s_.channels[i % cfg.groups].subscribers;
            }
        }
        pad_.assign(cfg.payload > 60 ? cfg.payload - 60 : 1, 'x');
    }

    int run() {
        const auto& cfg = s_.cfg;
        const long rss_before = cfg.server_pid ? proc_rss_kib(cfg.server_pid) : 0;
        for (auto& w : workers_) guards_.emplace_back(asio::make_work_guard(w->ioc));
        for (auto& w : workers_) threads_.emplace_back([&w] { w->ioc.run(); });

        const auto setup_start = clk::now();
        // Subscribers, at most connect_concurrency handshakes at a time.
        std::atomic<unsigned> next{0};
        std::atomic<unsigned> inflight{0};
        auto& pw = *workers_[0];
        std::function<void()> open_more;
        open_more = [&] {
            while (inflight.load() < cfg.connect_concurrency && next.load() < cfg.connections) {
                const unsigned i = next.fetch_add(1);
                if (i >= cfg.connections) break;
                inflight.fetch_add(1);
                worker& w = *workers_[i % workers_.size()];
                asio::post(w.ioc, [&, i, wp = &w] { open_subscriber(*wp, i, [&] {
                    s_.ready.fetch_add(1);
                    inflight.fetch_sub(1);
                    asio::post(pw.ioc, [&] { open_more(); });
                }); });
            }
        };
        asio::post(pw.ioc, [&] { open_more(); });
        while (s_.ready.load() + s_.failed.load() < cfg.connections) {
            if (clk::now() - setup_start > std::chrono::duration<double>(cfg.setup_timeout)) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            // A failed connect frees its handshake slot too.
            static std::uint64_t seen_failed = 0;
            const std::uint64_t f = s_.failed.load();
            if (f > seen_failed) {
                inflight.fetch_sub(static_cast<unsigned>(f - seen_failed));
                seen_failed = f;
                asio::post(pw.ioc, [&] { open_more(); });
            }
        }
        const double setup_seconds = std::chrono::duration<double>(clk::now() - setup_start).count();
        if (s_.ready.load() < cfg.connections) {
            std::fprintf(stderr, "netload: only %" PRIu64 " of %u subscribers ready (%" PRIu64 " failed) after %.1f s\n",
                         s_.ready.load(), cfg.connections, s_.failed.load(), setup_seconds);
            return finish(2, setup_seconds, 0, 0, {}, {}, rss_before, 0);
        }

        if (cfg.idle) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1500));
            const long rss_after = cfg.server_pid ? proc_rss_kib(cfg.server_pid) : 0;
            // Held for benchmarks/idle-100k.sh, which counts every server's connections at once.
            if (cfg.hold > 0) {
                const double hold = std::min(cfg.hold, 600.0);
                std::fprintf(stderr, "netload: %" PRIu64 " ready in %.2f s, holding %.0f s\n", s_.ready.load(), setup_seconds, hold);
                std::this_thread::sleep_for(std::chrono::duration<double>(hold));
            }
            return finish(s_.failed.load() ? 3 : 0, setup_seconds, 0, 0, {}, {}, rss_before, rss_after);
        }

        // The publisher.
        std::atomic<bool> pub_ready{false};
        asio::post(pw.ioc, [&] { open_publisher(pw, [&] { pub_ready = true; }); });
        const auto pub_start = clk::now();
        while (!pub_ready && clk::now() - pub_start < std::chrono::seconds(10)) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (!pub_ready) { std::fprintf(stderr, "netload: publisher did not connect\n"); return finish(2, setup_seconds, 0, 0, {}, {}, rss_before, 0); }

        s_.publisher_ioc = &pw.ioc;
        asio::post(pw.ioc, [&] { start_publishing(); });
        std::this_thread::sleep_for(std::chrono::duration<double>(cfg.warmup));
        auto snapshot = [&] {
            std::uint64_t d = 0;
            for (auto& w : workers_) d += w->stats.delivered.load(std::memory_order_relaxed);
            return d;
        };
        s_.measuring = true;
        const cpu_sample c0{self_cpu(), proc_cpu(cfg.server_pid)};
        const std::uint64_t d0 = snapshot();
        const auto t0 = clk::now();
        std::this_thread::sleep_for(std::chrono::duration<double>(cfg.duration));
        const std::uint64_t d1 = snapshot();
        const auto t1 = clk::now();
        const cpu_sample c1{self_cpu(), proc_cpu(cfg.server_pid)};
        s_.measuring = false;
        // Stop publishing, wait for what is owed.
        asio::post(pw.ioc, [&] { publishing_ = false; });
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto drain_start = clk::now();
        while (s_.completed.load() < published_total_.load() && clk::now() - drain_start < std::chrono::duration<double>(cfg.drain))
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        const double seconds = std::chrono::duration<double>(t1 - t0).count();
        return finish(0, setup_seconds, d1 - d0, seconds, c0, c1, rss_before, 0);
    }

private:
    void open_subscriber(worker& w, unsigned i, std::function<void()> ready) {
        const auto& cfg = s_.cfg;
        std::vector<std::string> channels;
        subscriber_state st;
        if (cfg.groups == 0) {
            channels.push_back("bench");
            st.channel[0] = 0;
        } else {
            const unsigned personal = cfg.groups + i;
            channels.push_back(s_.channels[personal].name);
            st.channel[0] = personal;
            if (!cfg.idle) {
                channels.push_back(s_.channels[i % cfg.groups].name);
                st.channel[1] = i % cfg.groups;
                st.nchannels = 2;
            }
        }
        if (cfg.idle && !cfg.idle_subscribe) channels.clear();
        std::shared_ptr<client> c;
        switch (cfg.transport) {
        case transport_kind::websocket:
            c = std::make_shared<ws_client>(w, ws_client::role::subscriber, channels, std::move(ready));
            break;
        case transport_kind::herald_longpoll:
            c = std::make_shared<herald_poller>(w, channels.at(0), std::move(ready));
            break;
        case transport_kind::socketio:
            c = std::make_shared<sio_poller>(w, channels.at(0), std::move(ready));
            break;
        }
        c->sub = st;
        {
            std::lock_guard<std::mutex> lock(subscribers_mu_);
            subscribers_.push_back(c);
        }
        c->connect([](bool) {});
    }

    void open_publisher(worker& w, std::function<void()> ready) {
        switch (s_.cfg.transport) {
        case transport_kind::websocket: {
            auto c = std::make_shared<ws_client>(w, ws_client::role::publisher, std::vector<std::string>{}, std::move(ready));
            // Acks that came in one read let one write of publishes go (a pump per ack
            // would send each publish in its own TCP segment).
            c->on_ack = [this] {
                ++acked_;
                if (!s_.complete_posted.exchange(true))
                    asio::post(*s_.publisher_ioc, [this] {
                        s_.complete_posted = false;
                        pump();
                    });
            };
            ws_pub_ = c;
            c->connect([](bool) {});
            break;
        }
        case transport_kind::herald_longpoll: {
            auto c = std::make_shared<herald_http_publisher>(w, std::move(ready));
            c->on_posted = [this] { posting_ = false; pump(); };
            lp_pub_ = c;
            c->connect([](bool) {});
            break;
        }
        case transport_kind::socketio: {
            auto c = std::make_shared<sio_poller>(w, "", std::move(ready));
            c->on_posted = [this] { posting_ = false; pump(); };
            sio_pub_ = c;
            c->connect([](bool) {});
            break;
        }
        }
    }

    // Publisher thread only.
    void start_publishing() {
        publishing_ = true;
        s_.on_complete = [this] { pump(); };
        if (s_.cfg.rate > 0) {
            timer_ = std::make_unique<asio::steady_timer>(*s_.publisher_ioc);
            due_ = clk::now();
            tick();
        } else {
            pump();
        }
    }

    void tick() {
        if (!publishing_) return;
        const auto period = std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(1.0 / s_.cfg.rate));
        const auto now = clk::now();
        while (due_ <= now && publishing_) {
            if (published_total_.load() - s_.completed.load() >= shared_state::ring_size / 2) { ++stalls_; break; }
            publish_one(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(due_.time_since_epoch()).count()));
            due_ += period;
        }
        if (due_ <= now) due_ = now + period;  // stalled: drop the schedule rather than burst
        timer_->expires_at(due_);
        timer_->async_wait([this](std::error_code ec) { if (!ec) tick(); });
    }

    void pump() {
        if (!publishing_ || s_.cfg.rate > 0) return;
        const bool http = s_.cfg.transport != transport_kind::websocket;
        while (publishing_) {
            if (http ? posting_ : published_total_.load() - acked_ >= s_.cfg.window) break;
            if (published_total_.load() - s_.completed.load() >= s_.cfg.max_inflight) { ++stalls_; break; }
            publish_one(now_ns(), false);
        }
        if (ws_pub_) ws_pub_->send_queued();
    }

    void publish_one(std::uint64_t t, bool now = true) {
        const auto& cfg = s_.cfg;
        const std::uint64_t mid = published_total_.load();
        std::size_t ch = 0;
        if (cfg.groups) {
            const std::uint64_t k = mid / 2;
            ch = (mid % 2 == 0) ? static_cast<std::size_t>(k % cfg.groups) : static_cast<std::size_t>(cfg.groups + k % cfg.connections);
        }
        channel_info& info = s_.channels[ch];
        const std::uint64_t seq = ++info.published;
        s_.ring[mid % shared_state::ring_size].store(info.subscribers, std::memory_order_release);
        published_total_.store(mid + 1);
        data_.clear();
        data_ += "{\"s\":"; data_ += std::to_string(seq);
        data_ += ",\"m\":"; data_ += std::to_string(mid);
        data_ += ",\"c\":"; data_ += std::to_string(ch);
        data_ += ",\"t\":"; data_ += std::to_string(t);
        data_ += ",\"p\":\""; data_ += pad_; data_ += "\"}";
        switch (cfg.transport) {
        case transport_kind::websocket:
            frame_ = "{\"type\":\"publish\",\"channel\":\"" + info.name + "\",\"data\":" + data_ + "}";
            ws_pub_->send_text(frame_, now);
            break;
        case transport_kind::herald_longpoll:
            posting_ = true;
            lp_pub_->publish(info.name, data_);
            break;
        case transport_kind::socketio:
            posting_ = true;
            sio_pub_->emit_publish("{\"channel\":\"" + info.name + "\",\"data\":" + data_ + "}");
            break;
        }
    }

    int finish(int code, double setup_seconds, std::uint64_t delivered, double seconds, cpu_sample c0, cpu_sample c1,
               long rss_before, long rss_after) {
        s_.stopping = true;
        guards_.clear();
        for (auto& w : workers_) w->ioc.stop();
        for (auto& t : threads_) t.join();
        counters total;
        std::uint64_t all_delivered = 0, reads = 0;
        for (auto& w : workers_) {
            all_delivered += w->stats.delivered.load();
            total.late += w->stats.late;
            total.gaps += w->stats.gaps;
            total.wrong_channel += w->stats.wrong_channel;
            total.malformed += w->stats.malformed;
            total.acks += w->stats.acks;
            reads += w->stats.reads;
            total.latency.merge(w->stats.latency);
        }
        std::uint64_t missing = 0;
        if (!s_.cfg.idle)
            for (auto& c : subscribers_) missing += c->sub.missing(s_);
        const double wall = seconds > 0 ? seconds : 1;
        std::ostringstream o;
        o.setf(std::ios::fixed);
        o.precision(3);
        o << "{\"label\":\"" << s_.cfg.label << "\",\"server\":\"" << s_.cfg.server_name << "\",\"connections\":" << s_.cfg.connections
          << ",\"ready\":" << s_.ready.load() << ",\"failed\":" << s_.failed.load() << ",\"setup_s\":" << setup_seconds;
        if (s_.cfg.idle) {
            o << ",\"rss_before_kib\":" << rss_before << ",\"rss_after_kib\":" << rss_after << ",\"bytes_per_conn\":"
              << (rss_after > rss_before ? static_cast<double>(rss_after - rss_before) * 1024.0 / s_.cfg.connections : 0.0);
        } else {
            o << ",\"seconds\":" << seconds << ",\"deliveries\":" << delivered << ",\"deliveries_per_s\":" << static_cast<double>(delivered) / wall
              << ",\"published\":" << published_total_.load() << ",\"completed\":" << s_.completed.load()
              << ",\"delivered_total\":" << all_delivered << ",\"missing\":" << missing << ",\"gaps\":" << total.gaps
              << ",\"late\":" << total.late << ",\"wrong_channel\":" << total.wrong_channel << ",\"malformed\":" << total.malformed
              << ",\"acks\":" << total.acks << ",\"publisher_stalls\":" << stalls_ << ",\"reads\":" << reads
              << ",\"lat_p50_us\":" << total.latency.percentile_us(0.5) << ",\"lat_p99_us\":" << total.latency.percentile_us(0.99)
              << ",\"lat_p999_us\":" << total.latency.percentile_us(0.999) << ",\"lat_max_us\":" << total.latency.percentile_us(1.0)
              << ",\"loadgen_cpu\":" << (c1.self - c0.self) / wall << ",\"server_cpu\":" << (c1.server - c0.server) / wall;
        }
        o << ",\"exit\":" << code << "}";
        std::cout << o.str() << std::endl;
        std::_Exit(code);  // connections are many; the kernel closes them faster than we would
    }

    shared_state s_;
    std::vector<std::unique_ptr<worker>> workers_;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
    std::vector<std::thread> threads_;
    std::mutex subscribers_mu_;
    std::vector<std::shared_ptr<client>> subscribers_;
    std::shared_ptr<ws_client> ws_pub_;
    std::shared_ptr<herald_http_publisher> lp_pub_;
    std::shared_ptr<sio_poller> sio_pub_;
    std::unique_ptr<asio::steady_timer> timer_;
    clk::time_point due_;
    bool publishing_ = false, posting_ = false;
    std::uint64_t acked_ = 0;
    std::atomic<std::uint64_t> published_total_{0};
    std::uint64_t stalls_ = 0;
    std::string pad_, data_, frame_;
};

} // namespace netload

int main(int argc, char** argv) {
    netload::config cfg;
    CLI::App app{"herald-netload: WebSocket / long-poll load generator with delivery checks"};
    std::string transport = "websocket";
    app.add_option("--host", cfg.host);
    app.add_option("--port", cfg.port)->required();
    app.add_option("--path", cfg.path, "WebSocket path");
    app.add_option("--transport", transport, "websocket | herald-longpoll | socketio");
    app.add_option("--label", cfg.label);
    app.add_option("--server", cfg.server_name, "server name, echoed");
    app.add_option("--server-pid", cfg.server_pid, "server process: CPU time and RSS");
    app.add_option("--connections", cfg.connections, "subscribers");
    app.add_option("--groups", cfg.groups, "0: one channel; else personal + group channels");
    app.add_option("--window", cfg.window, "publishes not yet acknowledged");
    app.add_option("--max-inflight", cfg.max_inflight, "messages not yet delivered to every subscriber");
    app.add_option("--rate", cfg.rate, "messages/s (open loop)");
    app.add_option("--warmup", cfg.warmup);
    app.add_option("--duration", cfg.duration);
    app.add_option("--drain", cfg.drain);
    app.add_option("--payload", cfg.payload, "bytes of message data (approximate, >= 60)");
    app.add_option("--threads", cfg.threads);
    app.add_option("--connect-concurrency", cfg.connect_concurrency);
    app.add_option("--setup-timeout", cfg.setup_timeout);
    app.add_flag("--idle", cfg.idle, "memory scenario: connect, subscribe, sample the server's RSS, leave");
    app.add_flag("!--idle-no-subscribe", cfg.idle_subscribe);
    app.add_option("--hold", cfg.hold, "idle: seconds to keep the connections open after measuring (at most 600)");
    CLI11_PARSE(app, argc, argv);
    if (transport == "websocket") cfg.transport = netload::transport_kind::websocket;
    else if (transport == "herald-longpoll") cfg.transport = netload::transport_kind::herald_longpoll;
    else if (transport == "socketio") cfg.transport = netload::transport_kind::socketio;
    else { std::cerr << "unknown transport " << transport << '\n'; return 1; }
    if (cfg.window == 0 || cfg.max_inflight == 0 || cfg.max_inflight > netload::shared_state::ring_size / 2) {
        std::cerr << "bad --window or --max-inflight\n";
        return 1;
    }
    return netload::runner(cfg).run();
}
