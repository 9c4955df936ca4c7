# Block-device tool tests (issue 4), included by tests/tools/CMakeLists.txt.
#
#   virtio_sim_blk_images        virtio-sim blk --image X --json reports sha256sum X for raw
#                                images of many sizes (incl. not a multiple of 512) and for an
#                                ext4 image made by mkfs.ext4 -d, over mmio, mmio-legacy, pci
#   virtio_sim_blk_write_from    --write-from SRC lands exactly SRC's bytes on the host image
#                                (rest untouched, partial last block preserved), flushed;
#                                --readonly refuses the write and leaves the image alone
#   blk_sha256 (gtest)           tools/virtio-sim/sha256.cpp against FIPS vectors and the
#                                system sha256sum
virtio_tool_test(virtio_sim_blk_images check_blk_images.py)
virtio_tool_test(virtio_sim_blk_write_from check_blk_write_from.py)

add_executable(virtio_blk_sha256_tests
  ${CMAKE_CURRENT_SOURCE_DIR}/blk_sha256_test.cpp
  ${PROJECT_SOURCE_DIR}/tools/virtio-sim/sha256.cpp)
target_include_directories(virtio_blk_sha256_tests PRIVATE ${PROJECT_SOURCE_DIR}/tools/virtio-sim)
target_link_libraries(virtio_blk_sha256_tests PRIVATE GTest::gtest_main)
virtio_warnings(virtio_blk_sha256_tests)
gtest_discover_tests(virtio_blk_sha256_tests PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
