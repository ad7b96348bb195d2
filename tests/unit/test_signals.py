"""Signal actions run in a thread of their own, never inside the handler (no deadlock on locks)."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    from overlayd.daemon_main import handle_signals

    lock = threading.Lock()           # stands in for a queue's or an Event's internal lock
    done = threading.Event()
    seen = []

    def action(signum):
        with lock:                    # the daemon's stop action takes such locks
            seen.append(threading.current_thread().name)
        done.set()

    handle_signals({signal.SIGUSR2: action})
    with lock:                        # the main thread holds the lock when the signal arrives
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.3)               # an action run as a handler, here, would wait forever
    print("ran in", seen[0] if done.wait(5) and seen else "NOTHING")
""")


def test_a_signal_arriving_while_the_main_thread_holds_a_lock_is_handled_not_deadlocked():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ran in signals"
