# Warning policy: -Wall -Wextra -Wconversion at least; errors when VIRTIO_WERROR (CI).
set(VIRTIO_WARNING_FLAGS -Wall -Wextra -Wconversion -Wsign-conversion -Wshadow
    -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wnull-dereference -Wdouble-promotion)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND VIRTIO_WARNING_FLAGS -Wvolatile -Wduplicated-cond -Wlogical-op)
elseif(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  list(APPEND VIRTIO_WARNING_FLAGS -Wdeprecated-volatile)
endif()
if(VIRTIO_WERROR)
  list(APPEND VIRTIO_WARNING_FLAGS -Werror)
endif()

# Applies the project's warnings to a target (not to third-party headers).
function(virtio_warnings target)
  target_compile_options(${target} PRIVATE ${VIRTIO_WARNING_FLAGS})
endfunction()

# Freestanding flags for code that ships in a kernel (core/, devices/).
set(VIRTIO_KERNEL_FLAGS -fno-exceptions -fno-rtti -fno-threadsafe-statics)
