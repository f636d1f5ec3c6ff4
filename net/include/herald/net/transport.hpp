// herald — the network Transport requirements: what basic_server needs of a transport it
// composes. This header, connection.hpp and transport_context.hpp are the whole plug-in
// interface; docs/architecture.md walks through adding a transport.
#pragma once

#include <herald/transport.hpp>
#include <herald/net/connection.hpp>
#include <herald/net/http.hpp>
#include <herald/net/transport_context.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace herald::net {

/// Network Transport requirements, in addition to the Transport requirements of
/// herald/transport.hpp (`T::name`, `T::options` with `enabled`). For `t` of type `T`, `ctx`
/// a `transport_context&`, `o` a `const T::options&`, `c` a `const connection_ptr&` and `r`
/// an `http_request&`:
///
/// | expression      | meaning                                                                  |
/// |-----------------|--------------------------------------------------------------------------|
/// | `T(ctx, o)`     | made by the server at start(), only when `o.enabled`; `ctx` outlives it   |
/// | `t.serve(c, r)` | `bool`, on `c`'s strand: false declines the request (the next transport is asked); true takes it: `t` answered it, holds `c` (connection::hold) or upgraded `c` (connection::upgrade) |
template <class T, class = void>
struct is_constructible_from_context : std::false_type {};
template <class T>
struct is_constructible_from_context<
    T, std::void_t<decltype(T(std::declval<transport_context&>(), std::declval<const typename T::options&>()))>>
    : std::true_type {};

template <class T, class = void>
struct has_serve : std::false_type {};
template <class T>
struct has_serve<T, std::void_t<decltype(bool(std::declval<T&>().serve(std::declval<const connection_ptr&>(),
                                                                       std::declval<http_request&>())))>>
    : std::true_type {};

template <class T, class = void>
struct is_network_transport : std::false_type {};
template <class T>
struct is_network_transport<T, std::enable_if_t<is_transport_v<T>>>
    : std::bool_constant<is_constructible_from_context<T>::value && has_serve<T>::value> {};

template <class T>
inline constexpr bool is_network_transport_v = is_network_transport<T>::value;

/// Checks `T` against the requirements one at a time, so that the compiler names the type
/// (in the instantiation) and the member that is missing.
template <class T>
constexpr bool check_network_transport() {
    static_assert(is_transport_v<T>,
                  "herald: a network transport needs `static constexpr std::string_view name` and an `options` "
                  "aggregate with `bool enabled` (see herald/transport.hpp)");
    static_assert(is_constructible_from_context<T>::value,
                  "herald: a network transport needs a constructor T(herald::net::transport_context&, const T::options&)");
    static_assert(has_serve<T>::value,
                  "herald: a network transport needs `bool serve(const herald::net::connection_ptr&, herald::http_request&)`");
    return true;
}

} // namespace herald::net
