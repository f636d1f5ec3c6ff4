# herald's third-party dependencies as INTERFACE targets, made the same way for herald's own
# build (plain targets `herald_deps_<name>`) and by the installed heraldConfig.cmake (imported
# targets `herald::deps_<name>`), so that an installed herald finds them again wherever they are.
#   herald_find_asio(<target>)        standalone Asio (ASIO_STANDALONE)
#   herald_find_websocketpp(<target>) websocketpp 0.8 (its HTTP parser and RFC 6455 processor)
#   herald_find_hiredis(<target>)     hiredis, by pkg-config
# Each sets HERALD_<NAME>_FOUND and makes <target> only when found.

function(_herald_deps_target target)
  if(target MATCHES "::")
    add_library(${target} INTERFACE IMPORTED)
  else()
    add_library(${target} INTERFACE)
  endif()
endfunction()

# An include directory the compiler searches anyway (/usr/include) is not added: as -isystem it
# would reorder the system headers (GCC's #include_next in <cstdlib> then fails).
function(_herald_deps_include target dir)
  if(NOT dir IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
    target_include_directories(${target} INTERFACE ${dir})
  endif()
endfunction()

macro(herald_find_asio target)
  find_path(HERALD_ASIO_INCLUDE_DIR asio.hpp)
  set(HERALD_ASIO_FOUND OFF)
  if(HERALD_ASIO_INCLUDE_DIR)
    set(HERALD_ASIO_FOUND ON)
    if(NOT TARGET ${target})
      find_package(Threads REQUIRED)
      _herald_deps_target(${target})
      _herald_deps_include(${target} ${HERALD_ASIO_INCLUDE_DIR})
      target_compile_definitions(${target} INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
      target_link_libraries(${target} INTERFACE Threads::Threads)
    endif()
  endif()
endmacro()

macro(herald_find_websocketpp target)
  find_path(HERALD_WEBSOCKETPP_INCLUDE_DIR websocketpp/version.hpp)
  set(HERALD_WEBSOCKETPP_FOUND OFF)
  if(HERALD_WEBSOCKETPP_INCLUDE_DIR)
    set(HERALD_WEBSOCKETPP_FOUND ON)
    if(NOT TARGET ${target})
      _herald_deps_target(${target})
      _herald_deps_include(${target} ${HERALD_WEBSOCKETPP_INCLUDE_DIR})
    endif()
  endif()
endmacro()

macro(herald_find_hiredis target)
  find_package(PkgConfig QUIET)
  set(HERALD_HIREDIS_FOUND OFF)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(HERALD_HIREDIS QUIET IMPORTED_TARGET hiredis)
    if(HERALD_HIREDIS_FOUND AND NOT TARGET ${target})
      _herald_deps_target(${target})
      target_link_libraries(${target} INTERFACE PkgConfig::HERALD_HIREDIS)
    endif()
  endif()
endmacro()
