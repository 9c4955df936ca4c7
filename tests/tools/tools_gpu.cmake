# GPU tool tests (issue 6), included by tests/tools/CMakeLists.txt.
#
#   virtio_sim_gpu_png   virtio-sim gpu --width 320 --height 200 --png X --json writes a
#                        320x200 PNG with the test pattern's four quadrant colours (red, green /
#                        blue, white), over mmio, mmio-legacy and pci; the JSON reports width,
#                        height, flushes and png; bad arguments exit 2
virtio_tool_test(virtio_sim_gpu_png check_gpu_png.py)
