// Names the calling thread (at most 15 characters): top, perf and /proc/PID/task/TID/comm then tell
// the export's compressors, writer and flusher apart from the main thread.
#pragma once

#include <pthread.h>

namespace cryo {

inline void name_this_thread(const char* name) {
  ::pthread_setname_np(::pthread_self(), name);  // only fails for a name over 15 characters
}

}  // namespace cryo
