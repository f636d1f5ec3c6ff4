// herald core benchmark: in-process fan-out, deliveries per second, herald against a naive
// baseline measured in the same run. Run it with benchmarks/run-core.sh; figures and method in
// benchmarks/RESULTS.md, "Core (in-process)".
//
// A delivery is one message queued to one subscriber and taken out by that subscriber's
// consumer. Both sides run the same workload, in rounds: publish a batch of messages (on a
// fixed pseudo-random sequence of channels), then every consumer takes what its subscriber
// was woken for, reads each message (size and first byte) and releases it. Publishing and
// consuming are both inside the measured time.
//
// herald, per publish: hub::publish (the blocking form CMS code calls): channel and payload
// checks (JSON validation included), the channel's next offset, the message frame encoded
// once, kept in the channel's history, queued by pointer to each subscriber session.
// Per delivery: session::take moves the frame pointers out; the consumer reads each frame.
// The wake function of each session (called when its queue becomes non-empty) raises a
// ready flag, as a transport would post to its loop.
//
// baseline, see naive_server.hpp: the map<string, vector<function>> under a mutex, one copy
// of the message per subscriber queue.
//
// Scenarios:
//   (a) 1 channel x 1000 subscribers, one thread publishing and consuming (one core);
//   (b) 10k channels x 10 subscribers: 10k sessions following 10 channels each, one thread;
//   (c) 1000 channels x 10 subscribers (1000 sessions x 10 channels), 4 threads that each
//       publish and then consume for their quarter of the sessions (on this 2-core machine
//       the 4 threads share 2 cores).
// In each, a consumer finds about 10 messages per round (batch sizes below).
#include "naive_server.hpp"

#include <herald/hub.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

const std::string payload = R"({"item":4242,"field":"title","by":"alice","rev":17})";
// Messages each channel's history keeps (the default, 1000, would hold ~3 GB for 10k channels
// on this shared machine).
constexpr std::size_t history_messages = 100;

struct layout {
    const char* title;
    int channels;
    int follows;    // channels each subscriber follows
    int sessions;   // subscribers
    int threads;    // publishing (and consuming) threads
    int batch;      // publishes per thread per round
    int rounds;     // rounds per benchmark iteration, per thread (threaded scenario)

    int subscribers_per_channel() const { return sessions * follows / channels; }
    std::uint64_t deliveries_per_round() const { return std::uint64_t(batch) * threads * subscribers_per_channel(); }
};

const layout scenario_a{"(a) 1 channel x 1000 subscribers, 1 thread", 1, 1, 1000, 1, 10, 1};
const layout scenario_b{"(b) 10k channels x 10 subscribers, 1 thread", 10000, 10, 10000, 1, 10000, 1};
const layout scenario_c{"(c) 1000 channels x 10 subscribers, 4 publishing threads", 1000, 10, 1000, 4, 250, 20};

std::string channel_name(int c) { return "project." + std::to_string(c) + ".items"; }

// Session s follows channels s, s + n/f, s + 2n/f, ... (mod n): every channel gets the same
// number of subscribers, and sessions share some channels but not all.
template <class F>
void for_each_follow(const layout& l, int s, F&& f) {
    for (int k = 0; k < l.follows; ++k) f((s + k * (l.channels / l.follows)) % l.channels);
}

// The channels published to, in order: a shuffled cycle over all of them, the same for both sides.
std::vector<int> publish_sequence(const layout& l) {
    std::vector<int> seq(static_cast<std::size_t>(l.channels));
    for (int c = 0; c < l.channels; ++c) seq[static_cast<std::size_t>(c)] = c;
    std::shuffle(seq.begin(), seq.end(), std::mt19937(42));
    return seq;
}

// ---- the two sides -----------------------------------------------------------------------

class herald_side {
public:
    static constexpr const char* name = "herald";

    explicit herald_side(const layout& l) : hub_(options()), subs_(new subscriber[static_cast<std::size_t>(l.sessions)]) {
        herald::rule_authorizer followers;  // the sessions follow any channel; the hub publishes
        followers.allow(herald::action::subscribe, "**");
        hub_.set_authorizer(std::move(followers));
        for (int c = 0; c < l.channels; ++c) names_.push_back(channel_name(c));
        for (int s = 0; s < l.sessions; ++s) {
            subscriber& sub = subs_[static_cast<std::size_t>(s)];
            sub.session = hub_.open_session({}, [ready = &sub.ready] { ready->store(true, std::memory_order_release); });
            for_each_follow(l, s, [&](int c) {
                if (hub_.subscribe(sub.session, names_[static_cast<std::size_t>(c)])) std::abort();
            });
            std::vector<herald::frame_ptr> answers;
            sub.session->take(answers);  // the `subscribed` frames: not deliveries
            sub.ready = false;
        }
    }

    bool publish(int channel) {
        std::error_code ec;
        hub_.publish(names_[static_cast<std::size_t>(channel)], payload, ec);
        return !ec;
    }

    std::size_t drain(int s, std::vector<herald::frame_ptr>& batch, std::uint64_t& checksum) {
        subscriber& sub = subs_[static_cast<std::size_t>(s)];
        if (!sub.ready.load(std::memory_order_relaxed) || !sub.ready.exchange(false, std::memory_order_acquire)) return 0;
        if (!sub.session->take(batch)) closed_ = true;
        std::size_t n = 0;
        for (const herald::frame_ptr& f : batch) {
            if (f->type != herald::frame_type::message) continue;
            checksum += f->text.size() + static_cast<unsigned char>(f->text[0]);
            ++n;
        }
        batch.clear();
        return n;
    }

    /// Whether the run was clean: no session closed (a slow-consumer close would lose deliveries).
    bool clean() const { return !closed_ && hub_.stats().slow_consumers == 0; }

    using batch_type = std::vector<herald::frame_ptr>;

private:
    struct subscriber {
        herald::session_ptr session;
        std::atomic<bool> ready{false};
    };

    static herald::hub_options options() {
        herald::hub_options o;
        o.history.max_messages = history_messages;
        return o;
    }

    herald::hub hub_;
    std::vector<std::string> names_;
    std::unique_ptr<subscriber[]> subs_;
    std::atomic<bool> closed_{false};
};

class baseline_side {
public:
    static constexpr const char* name = "baseline";

    explicit baseline_side(const layout& l)
        : server_(herald::detail::make_epoch()), conns_(new bench::naive_connection[static_cast<std::size_t>(l.sessions)]) {
        for (int c = 0; c < l.channels; ++c) names_.push_back(channel_name(c));
        for (int s = 0; s < l.sessions; ++s)
            for_each_follow(l, s, [&](int c) { server_.subscribe(names_[static_cast<std::size_t>(c)], conns_[static_cast<std::size_t>(s)]); });
    }

    bool publish(int channel) {
        server_.publish(names_[static_cast<std::size_t>(channel)], payload);
        return true;
    }

    std::size_t drain(int s, std::vector<std::string>& batch, std::uint64_t& checksum) {
        return bench::drain(conns_[static_cast<std::size_t>(s)], batch, checksum);
    }

    bool clean() const { return true; }

    using batch_type = std::vector<std::string>;

private:
    bench::naive_server server_;
    std::vector<std::string> names_;
    std::unique_ptr<bench::naive_connection[]> conns_;
};

// ---- the workload ------------------------------------------------------------------------

// One thread's share: publishes `batch` messages from its place in the sequence, then takes
// what its sessions (s % threads == t) were woken for. Counts stay for the fixture's life.
template <class Side>
struct worker {
    Side* side;
    const layout* l;
    const std::vector<int>* seq;
    int t;
    std::size_t pos;
    typename Side::batch_type batch{};
    std::uint64_t checksum = 0, published = 0, taken = 0;
    bool ok = true;

    void round() {
        for (int i = 0; i < l->batch; ++i) {
            ok &= side->publish((*seq)[pos]);
            if (++pos == seq->size()) pos = 0;
        }
        published += std::uint64_t(l->batch);
        drain();
    }
    void drain() {
        for (int s = t; s < l->sessions; s += l->threads) taken += side->drain(s, batch, checksum);
    }
};

// A side set up for a scenario and warmed up: every channel published to as many times as
// its history holds, so that measurements see the steady state (each publish evicts the
// channel's oldest frame) rather than a history that is still growing. Each fixture is built
// once and kept for the whole run (~0.5 GB in all), so that Google Benchmark can interleave
// the repetitions of herald and of the baseline: on a shared machine, a burst of someone
// else's load then falls on both sides alike rather than on one.
template <class Side>
struct fixture {
    explicit fixture(const layout& l) : side(l), seq(publish_sequence(l)) {
        for (int t = 0; t < l.threads; ++t)
            workers.push_back({&side, &l, &seq, t, seq.size() * std::size_t(t) / std::size_t(l.threads)});
        const std::uint64_t warm_rounds = (std::uint64_t(l.channels) * history_messages + std::uint64_t(l.batch) - 1) / std::uint64_t(l.batch);
        for (std::uint64_t r = 0; r < warm_rounds; ++r) workers[r % workers.size()].round();
        for (auto& w : workers) w.drain();
    }
    Side side;
    std::vector<int> seq;
    std::vector<worker<Side>> workers;
};

template <class Side>
fixture<Side>& fixture_for(const layout& l) {
    static std::map<const layout*, std::unique_ptr<fixture<Side>>> built;
    auto& f = built[&l];
    if (!f) f = std::make_unique<fixture<Side>>(l);
    return *f;
}

template <class Side>
void fan_out(benchmark::State& state, const layout& l) {
    fixture<Side>& fx = fixture_for<Side>(l);
    auto& workers = fx.workers;
    std::uint64_t before = 0;
    for (auto& w : workers) before += w.taken;

    if (l.threads == 1) {
        for (auto _ : state) workers[0].round();
    } else {
        // Threads are started per iteration (~0.1 ms for 4) and each runs `rounds` rounds
        // (~10 ms), so the start-up is in the measured time but small.
        for (auto _ : state) {
            std::vector<std::thread> threads;
            for (auto& w : workers)
                threads.emplace_back([&w, &l] {
                    for (int r = 0; r < l.rounds; ++r) w.round();
                });
            for (auto& th : threads) th.join();
        }
    }
    std::uint64_t delivered = 0;
    for (auto& w : workers) delivered += w.taken;
    delivered -= before;

    // What is still queued (the threaded rounds end at different times) is taken outside the
    // measured time, not counted in the rate; then everything published must have arrived.
    std::uint64_t published = 0, taken = 0;
    bool ok = fx.side.clean();
    for (auto& w : workers) {
        w.drain();
        published += w.published;
        taken += w.taken;
        ok &= w.ok;
        benchmark::DoNotOptimize(w.checksum);
    }
    if (!ok || !fx.side.clean() || taken != published * std::uint64_t(l.subscribers_per_channel())) {
        state.SkipWithError("deliveries lost or publish refused: the run does not count");
        return;
    }
    state.counters["deliveries/s"] = benchmark::Counter(double(delivered), benchmark::Counter::kIsRate);
}

// ---- reporting ---------------------------------------------------------------------------

// Shows the aggregates on the console and keeps every repetition's rate for the table.
class table_reporter : public benchmark::ConsoleReporter {
public:
    table_reporter() : ConsoleReporter(isatty(1) ? OO_Defaults : OO_Tabular) {}

    std::map<std::string, std::vector<double>> rates;  // "title|side" -> per repetition
    bool failed = false;

    void ReportRuns(const std::vector<Run>& runs) override {
        std::vector<Run> shown;
        for (const Run& r : runs) {
            if (r.error_occurred) failed = true;
            if (r.run_type == Run::RT_Aggregate || r.error_occurred) { shown.push_back(r); continue; }
            auto it = r.counters.find("deliveries/s");
            if (it != r.counters.end()) rates[r.run_name.function_name].push_back(it->second.value);
        }
        if (!shown.empty()) ConsoleReporter::ReportRuns(shown);
    }
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void print_table(const table_reporter& rep) {
    std::printf("\nherald core fan-out, deliveries/s (median of the repetitions; min-max in brackets)\n\n");
    std::printf("| scenario | herald | baseline | herald/baseline | targets |\n|---|---|---|---|---|\n");
    for (const layout* l : {&scenario_a, &scenario_b, &scenario_c}) {
        auto h = rep.rates.find(std::string(l->title) + "|herald");
        auto b = rep.rates.find(std::string(l->title) + "|baseline");
        if (h == rep.rates.end() || b == rep.rates.end() || h->second.empty() || b->second.empty()) continue;
        const double hm = median(h->second), bm = median(b->second), ratio = hm / bm;
        auto range = [](const std::vector<double>& v) {
            char s[64];
            std::snprintf(s, sizeof s, "%.2f M (%.2f-%.2f)", median(v) / 1e6, *std::min_element(v.begin(), v.end()) / 1e6,
                          *std::max_element(v.begin(), v.end()) / 1e6);
            return std::string(s);
        };
        std::string targets = ratio >= 2 ? "ratio >= 2x: met" : "ratio >= 2x: MISSED";
        if (l == &scenario_a) targets += hm >= 20e6 ? "; >= 20 M/s: met" : "; >= 20 M/s: MISSED";
        std::printf("| %s | %s | %s | %.2fx | %s |\n", l->title, range(h->second).c_str(), range(b->second).c_str(), ratio,
                    targets.c_str());
    }
    std::printf("\n");
}

template <class Side>
void add(const layout& l) {
    benchmark::RegisterBenchmark((std::string(l.title) + "|" + Side::name).c_str(),
                                 [&l](benchmark::State& s) { fan_out<Side>(s, l); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

} // namespace

int main(int argc, char** argv) {
    // A server has threads. Once a process has started one, the C library and libstdc++ stop
    // taking their single-threaded shortcuts (plain increments for shared_ptr counts, no
    // arena lock in malloc); start one now so that scenarios (a) and (b), which use one
    // thread, measure the code a server runs.
    std::thread([] {}).join();

    // Defaults that keep a run bounded (~1-2 minutes); later command-line flags override them.
    std::vector<char*> args{argv[0], const_cast<char*>("--benchmark_repetitions=9"),
                            const_cast<char*>("--benchmark_min_time=0.2"),
                            const_cast<char*>("--benchmark_enable_random_interleaving=true")};
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    int n = static_cast<int>(args.size());
    benchmark::Initialize(&n, args.data());
    if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;

    for (const layout* l : {&scenario_a, &scenario_b, &scenario_c}) {
        add<herald_side>(*l);
        add<baseline_side>(*l);
    }
    table_reporter rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    print_table(rep);
    benchmark::Shutdown();
    return rep.failed ? 1 : 0;
}
