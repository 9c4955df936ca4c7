// Stand-in for glibc's <features.h> when libstdc++'s headers are used for a bare-metal target
// (reference/style-anchors.md §4.2): libstdc++'s os_defines.h only needs __GLIBC_PREREQ.
#pragma once
#define __GLIBC_PREREQ(maj, min) 0
