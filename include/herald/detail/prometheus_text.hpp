// herald — a writer of Prometheus' text exposition format (version 0.0.4), for
// /herald/metrics and for the parts a CMS runs beside the server (basic_server::add_metrics).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace herald::detail {

/// Writes one metric family after another, each with its HELP and TYPE.
class prometheus_text {
public:
    void family(std::string_view name, std::string_view type, std::string_view help) {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    /// A sample: `labels` is empty or `{k="v",...}` (values herald's own: no escaping needed).
    void sample(std::string_view name, std::string_view labels, double value) {
        out_ += name;
        out_ += labels;
        out_ += ' ';
        char buf[32];
        const double rounded = static_cast<double>(static_cast<std::int64_t>(value));
        if (rounded == value && value < 9e15 && value > -9e15)
            std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(value));
        else
            std::snprintf(buf, sizeof buf, "%.9g", value);
        out_ += buf;
        out_ += '\n';
    }
    /// One family with one unlabelled sample.
    void single(std::string_view name, std::string_view type, std::string_view help, double value) {
        family(name, type, help);
        sample(name, {}, value);
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

} // namespace herald::detail
