# Sanitizer and fuzzing builds (see tools/sanitize.sh, tools/sanitize-tsan.sh and fuzz/).
#
#   -DCLLM_SANITIZE=address,undefined   ASan + UBSan on every target (tests, cllm, fuzzers)
#   -DCLLM_SANITIZE=thread              TSan
#   -DCLLM_FUZZ=ON                      libFuzzer targets in fuzz/ (needs clang); without it the
#                                       same targets are built with a replay main that runs their
#                                       committed inputs as ordinary tests
#
# Every error stops the program (no recovery), so that a test under a sanitizer fails on the
# first report. CAF and the other Debian libraries are not instrumented.
set(CLLM_SANITIZE "" CACHE STRING "Sanitizers to build with: address,undefined | thread | empty")
option(CLLM_FUZZ "Build the fuzz/ targets with libFuzzer (clang only)" OFF)

if(CLLM_SANITIZE)
  set(_cllm_san -fsanitize=${CLLM_SANITIZE})
  target_compile_options(cllm_flags INTERFACE ${_cllm_san} -fno-sanitize-recover=all
                                              -fno-omit-frame-pointer -g)
  target_link_options(cllm_flags INTERFACE ${_cllm_san})
endif()

if(CLLM_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "CLLM_FUZZ needs clang (libFuzzer): -DCMAKE_CXX_COMPILER=clang++")
endif()
