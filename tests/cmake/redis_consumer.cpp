// A consumer of the installed herald::redis: headers, hiredis and Asio found through
// heraldConfig. It does not connect (no Redis here): it builds, links and starts.
#include <herald.hpp>
#include <herald/backplane/redis.hpp>

int main() {
    asio::io_context io;
    herald::backplane::redis::options o;
    o.port = 1;  // nothing listens: the backplane only has to exist
    herald::backplane::redis redis(io, o);
    return redis.state() == herald::backplane::redis_state::stopped ? 0 : 1;
}
