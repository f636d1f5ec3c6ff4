// herald — the usual servers: basic_server with the common pairings of transports. What a CMS
// includes (CMake target herald::server).
#pragma once

#include <herald/basic_server.hpp>
#include <herald/transport/longpoll.hpp>
#include <herald/transport/websocket.hpp>

namespace herald {

/// WebSocket first, long-poll beside it on the same port: what a CMS usually wants. Each
/// transport can be switched off at run time (`options_of<transport::websocket>().enabled`).
using server = basic_server<transport::websocket, transport::longpoll>;

/// Only WebSocket.
using websocket_server = basic_server<transport::websocket>;

/// Only long-poll (e.g. behind infrastructure known to break WebSockets).
using longpoll_server = basic_server<transport::longpoll>;

} // namespace herald
