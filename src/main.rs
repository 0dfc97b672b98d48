//! The `steward` command line: a thin layer over the library.
//!
//! Parsing and validation live in [`cli`]; each subcommand builds its backend
//! and stages from the library and maps the outcome to an exit code
//! (see [`steward::error`]).

mod cli;

/// mimalloc as the global allocator, chosen on measurements (issue 15):
/// under callgrind, over 10,000 synthetic objects, `deep-check` costs
/// 182k instructions per object with it against 222k with glibc's
/// allocator (jemalloc 194k, snmalloc 184k), the allocator's share
/// falling from 60k to 21k; `manifest` 55k against 67k. Its CPU time per
/// object falls by 16-22% (10,000 and 100,000 objects, A/B runs), for
/// about 5 MiB more peak RSS that does not grow with the tree (with its
/// arenas committed lazily, below). MIT
/// licensed, a small C library built by its crate with no other tools.
///
/// Transparent huge pages are turned off for the process
/// ([`no_huge_pages`]): mimalloc 3 asks for them on its arenas, and with
/// them every 2 MiB region it touches becomes resident whole. Verifying a
/// 200 MB file natively peaked at 55 MB RSS with them and 35 MB without
/// (the heap itself at 13 MB, by heaptrack with the system allocator); an
/// idle run falls from 25 MB to 16 MB (issue 13).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits the whole of each arena it reserves at once by default
/// on Linux (`arena_eager_commit` 2: "where the OS overcommits"), which put
/// about 12 MB into steward's resident set before its first object: peak
/// RSS of a 10,000-object `deep-check` 12.3 MB with glibc's allocator,
/// 27.6 MB with mimalloc as it came, 16.8 MB with arenas committed as
/// they are used (this option), at the same CPU time per object (A/B over
/// the synthetic gateway). Set as the default before anything is
/// allocated, so `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still
/// wins.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static COMMIT_ARENAS_LAZILY: extern "C" fn() = commit_arenas_lazily;

#[cfg(target_os = "linux")]
extern "C" fn commit_arenas_lazily() {
    extern "C" {
        /// mimalloc's `mi_option_set_default` (linked in by
        /// libmimalloc-sys; its Rust declaration is behind a feature that
        /// brings more than this one function).
        fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    /// `mi_option_arena_eager_commit` in mimalloc.h's `mi_option_e`.
    const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
    // SAFETY: sets one option's default value; called once, before main.
    unsafe { mi_option_set_default(ARENA_EAGER_COMMIT, 0) }
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages;

/// `prctl(PR_SET_THP_DISABLE)`, before `main`: it holds for every page
/// faulted in from then on, whatever the mappings asked for (mimalloc's
/// own option is read when its first arena is made, which may be before
/// anything here runs). Inherited by child processes, which steward
/// starts only in `demo` (itself). A kernel that refuses it changes
/// nothing but the memory used.
#[cfg(target_os = "linux")]
extern "C" fn no_huge_pages() {
    // SAFETY: the call only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Whether standard output was closed when the process was started
/// (`steward manifest ... >&-`). Rust's runtime reopens a closed descriptor
/// 0, 1 or 2 on /dev/null before `main` (so that no file opened later takes
/// its place), and then a closed standard output cannot be told from
/// `>/dev/null`, a user's legitimate choice: even its open mode is no sign,
/// since daemon(3) and many supervisors give their children /dev/null
/// opened read-write, as the runtime does. So it is looked at before the
/// runtime starts, from the ELF `.init_array`, which the C library runs
/// before it calls `main` (Linux; elsewhere it is not known, and the
/// runtime's /dev/null is taken as the user's).
static STDOUT_CLOSED_AT_START: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static LOOK_AT_STDOUT: extern "C" fn() = look_at_stdout;

#[cfg(target_os = "linux")]
extern "C" fn look_at_stdout() {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with
    // EBADF when descriptor 1 is not open. Nothing else runs yet.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED_AT_START.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn main() {
    let code = cli::main(STDOUT_CLOSED_AT_START.load(std::sync::atomic::Ordering::Relaxed));
    std::process::exit(code as i32);
}
