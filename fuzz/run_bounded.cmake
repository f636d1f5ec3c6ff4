# One bounded fuzz run (a CTest test, fuzz/CMakeLists.txt): copies the committed seeds into
# the build tree (libFuzzer adds what it finds to its first corpus folder: the repository
# stays untouched), then fuzzes for SECONDS over them and the crash regressions.
# Fails on any crash, leak, timeout or out-of-memory; the input is left in WORK/artifacts/.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB seeds ${SEEDS}/*)
file(COPY ${seeds} DESTINATION ${WORK}/corpus)
set(dirs ${WORK}/corpus)
if(EXISTS ${REGRESSIONS})
  list(APPEND dirs ${REGRESSIONS})
endif()
set(dict)
if(DICT)
  set(dict -dict=${DICT})
endif()
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 ${dict}
          -artifact_prefix=${WORK}/artifacts/ ${dirs}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB found ${WORK}/artifacts/*)
  message(FATAL_ERROR "fuzzer failed (exit ${rc}); input: ${found}")
endif()
