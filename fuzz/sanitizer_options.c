/* Linked into the sanitized front end only (fuzz/build.sh --frontend). A runtime starts the
 * front end with its own, clean environment, so ASAN_OPTIONS cannot reach it: the options are
 * compiled in. Reports go to files under SANITIZER_LOG (one per process), where the test run
 * looks for them; a report also ends the process with exit code 86. LeakSanitizer is off here:
 * it costs ~40 ms at every exit of a process that lives for milliseconds; the fuzzers check
 * the parsers for leaks. */
#ifndef SANITIZER_LOG
#error "SANITIZER_LOG: the directory for sanitizer reports"
#endif

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);

const char *__asan_default_options(void) {
    return "log_path=" SANITIZER_LOG "/asan:exitcode=86:detect_leaks=0:abort_on_error=0";
}

const char *__ubsan_default_options(void) {
    return "log_path=" SANITIZER_LOG "/ubsan:print_stacktrace=1:halt_on_error=1:exitcode=86";
}
