// Termination signals held back while work must not be cut short. A checkpoint replaces the
// registers of a container's thread to run a syscall in it: a CLI killed by Ctrl-C at that moment
// leaves the thread to resume with those registers, and the container dies of SIGSEGV. While a
// DeferredTermination lives, SIGINT, SIGTERM, SIGHUP and SIGQUIT are only recorded; the work
// stops at its next safe point (throw_if_interrupted), undoes what it did like any failure, and
// the process then ends by the signal (raise_deferred_termination) once it has said why.
// SIGPIPE is ignored meanwhile: a closed stderr must not end a checkpoint half way either.
#pragma once

namespace cryo {

class DeferredTermination {
 public:
  DeferredTermination();
  // Puts the previous dispositions back. A recorded signal stays pending for
  // raise_deferred_termination().
  ~DeferredTermination();
  DeferredTermination(const DeferredTermination&) = delete;
  DeferredTermination& operator=(const DeferredTermination&) = delete;
};

// The first termination signal recorded by a DeferredTermination of this process, 0 if none.
int deferred_termination_signal();

// Throws cryo::Error("interrupted by SIGINT", ...) when a termination signal was recorded. Called
// where stopping leaves nothing half done.
void throw_if_interrupted();

// Ends the process by the recorded signal (default disposition, as if it had not been held); does
// nothing when none was recorded. Output streams are flushed first.
void raise_deferred_termination();

}  // namespace cryo
