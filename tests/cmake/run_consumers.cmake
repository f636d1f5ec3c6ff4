# Builds two small consumers of herald: one by find_package after `cmake --install`, one by
# add_subdirectory. Run with -DSOURCE_DIR -DWORK_DIR -DCXX.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()
set(here ${CMAKE_CURRENT_LIST_DIR})

# 1. install herald into a prefix, then find_package it
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/herald-build -DCMAKE_CXX_COMPILER=${CXX}
    -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_EXAMPLES=OFF -DHERALD_BUILD_BENCHMARKS=OFF -DHERALD_BUILD_TOOLS=OFF -DHERALD_INSTALL=ON
    -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/herald-build)
run(${CMAKE_COMMAND} -S ${here}/find_package -B ${WORK_DIR}/fp-build -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/fp-build)
run(${WORK_DIR}/fp-build/consumer)
run(${WORK_DIR}/fp-build/server_consumer)
foreach(optional IN ITEMS redis_consumer postgres_consumer)
  if(EXISTS ${WORK_DIR}/fp-build/${optional})
    run(${WORK_DIR}/fp-build/${optional})
  endif()
endforeach()

# 2. add_subdirectory
run(${CMAKE_COMMAND} -S ${here}/add_subdirectory -B ${WORK_DIR}/as-build -DCMAKE_CXX_COMPILER=${CXX}
    -DHERALD_SOURCE_DIR=${SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/as-build)
run(${WORK_DIR}/as-build/consumer)
message(STATUS "both consumers built and ran")
