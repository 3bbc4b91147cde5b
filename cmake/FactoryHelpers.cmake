# One helper per target kind, with explicit dependencies (abseil's absl_cc_library).

# factory_library(NAME name SRCS ... DEPS ...)
# Creates factory_<name>; public headers are included as "<module>/<header>.h" from src/.
function(factory_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(factory_${ARG_NAME} STATIC ${ARG_SRCS})
  target_include_directories(factory_${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(factory_${ARG_NAME} PUBLIC ${ARG_DEPS})
endfunction()

# factory_test(NAME name SRCS ... DEPS ... [LABELS ...])
# A GoogleTest binary registered with CTest test by test.
function(factory_test)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(${ARG_NAME} PRIVATE FACTORY_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  if(TARGET factory)
    target_compile_definitions(${ARG_NAME} PRIVATE FACTORY_BINARY="$<TARGET_FILE:factory>")
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  # gtest_discover_tests writes PROPERTIES unquoted into its script: a second label would become
  # a property name. More labels go on the directory (set_property(DIRECTORY ... LABELS)).
  list(LENGTH ARG_LABELS label_count)
  if(label_count GREATER 1)
    message(FATAL_ERROR "factory_test(${ARG_NAME}): one label only (got ${ARG_LABELS}); give the "
                        "others with set_property(DIRECTORY APPEND PROPERTY LABELS ...)")
  endif()
  gtest_discover_tests(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}" DISCOVERY_TIMEOUT 60)
  # The `unit_tests` target builds these alone (the sanitizer job runs only them).
  if(ARG_LABELS STREQUAL "unit")
    set_property(GLOBAL APPEND PROPERTY FACTORY_UNIT_TEST_TARGETS ${ARG_NAME})
  endif()
endfunction()
