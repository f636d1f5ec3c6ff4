// herald — live updates from a C++ server to browsers. Umbrella header of the core:
// no Asio, no websocketpp, standard C++17 (and nlohmann/json for the wire protocol).
#pragma once

#include <herald/version.hpp>
#include <herald/error.hpp>
#include <herald/channel.hpp>
#include <herald/frame.hpp>
#include <herald/options.hpp>
#include <herald/authorizer.hpp>
#include <herald/session.hpp>
#include <herald/backplane.hpp>
#include <herald/protocol.hpp>
#include <herald/transport.hpp>
#include <herald/hub.hpp>
#include <herald/peer.hpp>
