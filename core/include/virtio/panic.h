// The one hook the embedder must provide: called on programmer errors only (misuse of
// Result, violated preconditions in the driver's own code). Device or guest input never
// reaches it; those become virtio::Error values.
#pragma once

extern "C" [[noreturn]] void virtio_panic(const char* message);

namespace virtio {
[[noreturn]] inline void panic(const char* message) { virtio_panic(message); }
}  // namespace virtio
