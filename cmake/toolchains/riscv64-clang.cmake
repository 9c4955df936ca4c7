# CMake toolchain: freestanding riscv64 (RV64GC, lp64d) with clang 14 + ld.lld 14.
#
#   cmake -S kernel -B build/kernel-riscv64 -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/riscv64-clang.cmake
#
# (kernel/CMakeLists.txt selects this file itself when none is given, and the
# `riscv64-kernel` configure preset does the same.)
#
# What it sets up (reference/qemu-riscv-virt.md §3, §7; tests/freestanding/check.sh):
#   - --target=riscv64-unknown-elf -march=rv64gc -mabi=lp64d -mcmodel=medany -mno-relax
#     (medany: the image is linked at 0x8020_0000, out of medlow's ±2 GiB-around-0 range;
#     -mno-relax: lld 14 does not implement RISC-V linker relaxation);
#   - -ffreestanding -nostdlib, C++ without exceptions, RTTI or thread-safe statics;
#   - libstdc++'s C++ headers from Debian's libstdc++-12-dev-riscv64-cross behind a features.h
#     shim (tests/freestanding/shim), exactly the freestanding check's flags. The cross glibc
#     headers are deliberately NOT on the path (they break <cstdint> with the shim);
#   - executables are linked by calling ld.lld directly (no crt files, no libraries).
#
# Cache variables: VIRTIO_LLVM_SUFFIX ("-14"), VIRTIO_RISCV_CROSS (/usr/riscv64-linux-gnu).

set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv64)

set(VIRTIO_LLVM_SUFFIX "-14" CACHE STRING "Suffix of the clang/lld/llvm tool names")
set(VIRTIO_RISCV_CROSS "/usr/riscv64-linux-gnu" CACHE PATH
    "Root of Debian's riscv64 cross tree (libstdc++-12-dev-riscv64-cross)")
# try_compile runs in a fresh project that only sees variables listed here.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES VIRTIO_LLVM_SUFFIX VIRTIO_RISCV_CROSS)

set(VIRTIO_RISCV_TRIPLE riscv64-unknown-elf)
set(CMAKE_C_COMPILER clang${VIRTIO_LLVM_SUFFIX})
set(CMAKE_CXX_COMPILER clang++${VIRTIO_LLVM_SUFFIX})
set(CMAKE_ASM_COMPILER clang${VIRTIO_LLVM_SUFFIX})
set(CMAKE_C_COMPILER_TARGET ${VIRTIO_RISCV_TRIPLE})
set(CMAKE_CXX_COMPILER_TARGET ${VIRTIO_RISCV_TRIPLE})
set(CMAKE_ASM_COMPILER_TARGET ${VIRTIO_RISCV_TRIPLE})
find_program(CMAKE_LINKER NAMES ld.lld${VIRTIO_LLVM_SUFFIX} ld.lld REQUIRED)
find_program(CMAKE_AR NAMES llvm-ar${VIRTIO_LLVM_SUFFIX} llvm-ar REQUIRED)
find_program(CMAKE_RANLIB NAMES llvm-ranlib${VIRTIO_LLVM_SUFFIX} llvm-ranlib REQUIRED)
find_program(CMAKE_NM NAMES llvm-nm${VIRTIO_LLVM_SUFFIX} llvm-nm)
find_program(CMAKE_OBJCOPY NAMES llvm-objcopy${VIRTIO_LLVM_SUFFIX} llvm-objcopy)
find_program(VIRTIO_LLVM_SIZE NAMES llvm-size${VIRTIO_LLVM_SUFFIX} llvm-size)

# Compiler checks must not try to link a hosted program.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

get_filename_component(_virtio_root "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
set(_cxx_inc "${VIRTIO_RISCV_CROSS}/include/c++/12")

set(_arch "-march=rv64gc -mabi=lp64d -mcmodel=medany -mno-relax")
set(_free "-ffreestanding -nostdlib -ffunction-sections -fdata-sections")
set(CMAKE_ASM_FLAGS_INIT "${_arch}")
set(CMAKE_C_FLAGS_INIT "${_arch} ${_free}")
set(CMAKE_CXX_FLAGS_INIT
    "${_arch} ${_free} -fno-exceptions -fno-rtti -fno-threadsafe-statics -nostdinc++ \
-D_GLIBCXX_ATOMIC_WAIT_H -isystem ${_virtio_root}/tests/freestanding/shim \
-isystem ${_cxx_inc} -isystem ${_cxx_inc}/riscv64-linux-gnu")

# Link with ld.lld itself: <FLAGS> (compile flags) are not passed, only linker options.
set(CMAKE_C_LINK_EXECUTABLE "<CMAKE_LINKER> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
set(CMAKE_CXX_LINK_EXECUTABLE "<CMAKE_LINKER> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-nostdlib --no-undefined")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
