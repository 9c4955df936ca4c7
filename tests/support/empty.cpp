// Keeps virtio_test_support a real library even before it has helpers.
