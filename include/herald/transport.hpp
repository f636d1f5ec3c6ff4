// herald — the Transport requirement: adapters that turn a peer into a hub session.
#pragma once

#include <string_view>
#include <type_traits>

namespace herald {

/// Transport requirements. A type `T` is a Transport when:
///
/// | expression        | type / meaning                                                        |
/// |-------------------|-----------------------------------------------------------------------|
/// | `T::name`         | `static constexpr std::string_view`: the name clients see in `welcome.transports` |
/// | `T::options`      | an aggregate with a `bool enabled` member: the run-time switch          |
///
/// A transport makes one herald::peer per client (peer.hpp: it opens the hub session, applies
/// the client's requests and queues the answers), writes what the peer's session queues, and
/// lets the peer go when the client goes: framing and I/O only. Network transports add, for
/// herald::basic_server, the members listed in docs/requirements.md.
template <class T, class = void>
struct is_transport : std::false_type {};

template <class T>
struct is_transport<T, std::void_t<decltype(std::string_view(T::name)), typename T::options,
                                   decltype(std::declval<typename T::options&>().enabled = true)>>
    : std::true_type {};

template <class T>
inline constexpr bool is_transport_v = is_transport<T>::value;

} // namespace herald
