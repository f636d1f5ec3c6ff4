#include <herald/transport/inmemory.hpp>
#include <herald.hpp>

int include_all_b() { return herald::is_valid_channel("b") ? 1 : 0; }
