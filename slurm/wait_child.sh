# wait_child PID: one `wait` for a background child of this shell, sourced by slurm/job.sh.
#
# Returns 0 and sets child_rc to the child's exit status once it has ended; returns 1 when a trap interrupted
# the wait while the child still runs (call it again). A trap interrupts `wait`, which then returns 128+signal
# even if the child ended meanwhile (while the trap ran, say): taken as the child's status, a finished run would
# read as failed and a preempted one would not be requeued. Bash keeps an ended child's status until a `wait`
# collects it, so a status above 128 is checked with a second `wait`: 127 ("not a child") there means the first
# one had collected the child's own status (it was killed by a signal).
wait_child() {
  local status again
  wait "$1"
  status=$?
  if ((status > 128)); then
    if kill -0 "$1" 2>/dev/null; then return 1; fi
    wait "$1" 2>/dev/null
    again=$?
    ((again == 127)) || status=$again
  fi
  child_rc=$status
  return 0
}
