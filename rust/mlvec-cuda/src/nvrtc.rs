//! Compiling the embedded sources with NVRTC, with an on-disk cubin cache.
//!
//! NVRTC is opened by `cudarc` under its usual names (`libnvrtc.so.13`, `.12`, ...). pip's
//! `nvidia-cuda-nvrtc` wheel does not put it on the loader's path, so the caller may name the file
//! ([`configure`], or `MLVEC_NVRTC_PATH`): it is opened first by its full path, together with the
//! `libnvrtc-builtins` beside it, and the later open by name finds the same library. NVRTC ships
//! no CUDA headers; `cuda_fp16.h` / `cuda_bf16.h` come from include folders given the same way
//! (`MLVEC_CUDA_INCLUDE`, `:`-separated).

use crate::error::{Error, Result};
use crate::sources::{self, Unit, HEADERS, UNITS};
use cudarc::nvrtc::sys;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

#[derive(Default, Clone)]
struct Config {
    nvrtc_path: Option<PathBuf>,
    include_dirs: Vec<PathBuf>,
    cache_dir: Option<PathBuf>,
}

fn config() -> &'static Mutex<Config> {
    static CONFIG: OnceLock<Mutex<Config>> = OnceLock::new();
    CONFIG.get_or_init(|| Mutex::new(Config::default()))
}

fn current_config() -> Config {
    config().lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Set where NVRTC, the CUDA headers and the cubin cache are. `None` keeps the current value
/// (environment variables `MLVEC_NVRTC_PATH`, `MLVEC_CUDA_INCLUDE`, `MLVEC_CACHE_DIR` apply when
/// nothing was set).
pub fn configure(
    nvrtc_path: Option<PathBuf>,
    include_dirs: Option<Vec<PathBuf>>,
    cache_dir: Option<PathBuf>,
) {
    let mut c = config().lock().unwrap_or_else(|e| e.into_inner());
    if nvrtc_path.is_some() {
        c.nvrtc_path = nvrtc_path;
    }
    if let Some(dirs) = include_dirs {
        c.include_dirs = dirs;
    }
    if cache_dir.is_some() {
        c.cache_dir = cache_dir;
    }
}

fn nvrtc_path() -> Option<PathBuf> {
    current_config()
        .nvrtc_path
        .or_else(|| std::env::var_os("MLVEC_NVRTC_PATH").map(PathBuf::from))
}

fn include_dirs() -> Vec<PathBuf> {
    let c = current_config();
    if !c.include_dirs.is_empty() {
        return c.include_dirs;
    }
    std::env::var_os("MLVEC_CUDA_INCLUDE")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default()
}

/// The cubin cache folder: configured, `MLVEC_CACHE_DIR`, `$XDG_CACHE_HOME/mlvec/cuda` or
/// `~/.cache/mlvec/cuda`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = current_config().cache_dir {
        return Some(d);
    }
    if let Some(d) = std::env::var_os("MLVEC_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("mlvec").join("cuda"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("mlvec").join("cuda"))
}

/// Libraries opened by full path stay loaded for the life of the process.
fn preload(path: &Path) -> Result<()> {
    static LOADED: OnceLock<Mutex<Vec<(PathBuf, libloading::Library)>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| Mutex::new(Vec::new()));
    let mut loaded = loaded.lock().unwrap_or_else(|e| e.into_inner());
    if loaded.iter().any(|(p, _)| p == path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        // NVRTC opens its builtins library by name at compile time; open it from here first.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().starts_with("libnvrtc-builtins") {
                    // SAFETY: loading a shared library runs its initialisers; NVRTC's are benign.
                    if let Ok(lib) = unsafe { libloading::Library::new(e.path()) } {
                        loaded.push((e.path(), lib));
                    }
                }
            }
        }
    }
    // SAFETY: as above.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| Error::Unavailable(format!("cannot load NVRTC from {}: {e}", path.display())))?;
    loaded.push((path.to_path_buf(), lib));
    Ok(())
}

/// NVRTC's version, loading it on first call.
pub fn version() -> Result<(i32, i32)> {
    if let Some(p) = nvrtc_path() {
        preload(&p)?;
    }
    // SAFETY: only probes whether the library can be opened.
    if !unsafe { sys::is_culib_present() } {
        return Err(Error::Unavailable(
            "NVRTC (libnvrtc) not found: install the nvidia-cuda-nvrtc wheel (torch's CUDA build \
             brings it) and `import mlvec.cuda`, or set MLVEC_NVRTC_PATH to the library file"
                .into(),
        ));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; the out-pointers are valid.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::Unavailable(format!("nvrtcVersion failed: {r:?}")));
    }
    Ok((major, minor))
}

fn check_arch(arch: &str) -> Result<()> {
    let digits = arch.strip_prefix("sm_").unwrap_or("");
    let num: String = digits.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = &digits[num.len()..];
    if num.len() < 2 || !(rest.is_empty() || rest == "a" || rest == "f") {
        return Err(Error::invalid(
            "arch",
            format!("expected a real architecture like \"sm_80\" or \"sm_90a\", got {arch:?}"),
        ));
    }
    if num.parse::<u32>().unwrap_or(0) < 80 {
        return Err(Error::invalid(
            "arch",
            format!("{arch}: the kernels use bf16 tensor-core instructions, which need sm_80 or newer"),
        ));
    }
    Ok(())
}

fn options(arch: &str) -> Vec<String> {
    let mut opts = vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        "-lineinfo".to_string(),
    ];
    opts.extend(include_dirs().iter().map(|d| format!("-I{}", d.display())));
    opts
}

/// Stable 64-bit FNV-1a, for cache keys (std's hasher may change between Rust releases).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn cache_key(unit: &Unit, arch: &str, ver: (i32, i32), opts: &[String]) -> String {
    let mut parts: Vec<&[u8]> = vec![unit.source.as_bytes()];
    for (name, src) in HEADERS {
        parts.push(name.as_bytes());
        parts.push(src.as_bytes());
    }
    let joined = opts.join("\u{1f}");
    parts.push(joined.as_bytes());
    let stem = unit.file.trim_end_matches(".cu");
    format!(
        "{stem}-{arch}-nvrtc{}.{}-{:016x}.cubin",
        ver.0,
        ver.1,
        fnv1a(&parts)
    )
}

struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram and destroyed once.
        unsafe {
            sys::nvrtcDestroyProgram(&mut self.0);
        }
    }
}

fn nv(call: &'static str, r: sys::nvrtcResult) -> Result<()> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(Error::Driver {
            call,
            msg: format!("{r:?}"),
        })
    }
}

fn program_log(prog: &Program) -> String {
    let mut size = 0usize;
    // SAFETY: valid program; the buffer has the size NVRTC reported.
    unsafe {
        if sys::nvrtcGetProgramLogSize(prog.0, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS {
            return String::new();
        }
        let mut buf = vec![0u8; size.max(1)];
        if sys::nvrtcGetProgramLog(prog.0, buf.as_mut_ptr() as *mut c_char) != sys::nvrtcResult::NVRTC_SUCCESS
        {
            return String::new();
        }
        CStr::from_bytes_until_nul(&buf)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Compile one unit for `arch` (no cache), checking that every kernel it lists is defined.
fn compile_unit(unit: &Unit, arch: &str, opts: &[String]) -> Result<Vec<u8>> {
    let cstr = |s: &str| CString::new(s).expect("sources and options hold no NUL byte");
    let src = cstr(unit.source);
    let name = cstr(unit.file);
    let hdr_src: Vec<CString> = HEADERS.iter().map(|(_, s)| cstr(s)).collect();
    let hdr_names: Vec<CString> = HEADERS.iter().map(|(n, _)| cstr(n)).collect();
    let hdr_src_p: Vec<*const c_char> = hdr_src.iter().map(|s| s.as_ptr()).collect();
    let hdr_names_p: Vec<*const c_char> = hdr_names.iter().map(|s| s.as_ptr()).collect();
    let mut raw: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer is a live NUL-terminated string for the duration of the call.
    nv("nvrtcCreateProgram", unsafe {
        sys::nvrtcCreateProgram(
            &mut raw,
            src.as_ptr(),
            name.as_ptr(),
            HEADERS.len() as i32,
            hdr_src_p.as_ptr(),
            hdr_names_p.as_ptr(),
        )
    })?;
    let prog = Program(raw);
    let kernel_names: Vec<CString> = unit.kernels.iter().map(|k| cstr(k)).collect();
    for k in &kernel_names {
        // SAFETY: valid program and string.
        nv("nvrtcAddNameExpression", unsafe {
            sys::nvrtcAddNameExpression(prog.0, k.as_ptr())
        })?;
    }
    let copts: Vec<CString> = opts.iter().map(|o| cstr(o)).collect();
    let copts_p: Vec<*const c_char> = copts.iter().map(|s| s.as_ptr()).collect();
    // SAFETY: valid program and option strings.
    let r = unsafe { sys::nvrtcCompileProgram(prog.0, copts_p.len() as i32, copts_p.as_ptr()) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::Compile {
            file: unit.file.to_string(),
            arch: arch.to_string(),
            log: format!("{r:?}\n{}", program_log(&prog)),
        });
    }
    for (k, ck) in unit.kernels.iter().zip(&kernel_names) {
        let mut lowered: *const c_char = std::ptr::null();
        // SAFETY: the name was added before compiling; NVRTC owns the returned string.
        let r = unsafe { sys::nvrtcGetLoweredName(prog.0, ck.as_ptr(), &mut lowered) };
        // SAFETY: on success `lowered` points to a NUL-terminated string owned by the program.
        let same = r == sys::nvrtcResult::NVRTC_SUCCESS
            && !lowered.is_null()
            && unsafe { CStr::from_ptr(lowered) }.to_bytes() == k.as_bytes();
        if !same {
            return Err(Error::Compile {
                file: unit.file.to_string(),
                arch: arch.to_string(),
                log: format!("kernel {k} is not defined as an extern \"C\" __global__ function"),
            });
        }
    }
    let mut size = 0usize;
    // SAFETY: compiled program; the buffer has the size NVRTC reported.
    nv("nvrtcGetCUBINSize", unsafe {
        sys::nvrtcGetCUBINSize(prog.0, &mut size)
    })?;
    let mut cubin = vec![0u8; size];
    nv("nvrtcGetCUBIN", unsafe {
        sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char)
    })?;
    if cubin.is_empty() {
        return Err(Error::Compile {
            file: unit.file.to_string(),
            arch: arch.to_string(),
            log: "NVRTC produced an empty cubin".into(),
        });
    }
    Ok(cubin)
}

/// The cubin of `unit` for `arch`: from the cache when present, else compiled and cached.
/// A cache that cannot be read or written is skipped, never an error.
pub fn cubin(unit: &Unit, arch: &str) -> Result<Vec<u8>> {
    check_arch(arch)?;
    let ver = version()?;
    let opts = options(arch);
    let dir = cache_dir();
    let path = dir.as_ref().map(|d| d.join(cache_key(unit, arch, ver, &opts)));
    if let Some(p) = &path {
        if let Ok(bytes) = std::fs::read(p) {
            if !bytes.is_empty() {
                return Ok(bytes);
            }
        }
    }
    let bin = compile_unit(unit, arch, &opts)?;
    if let (Some(d), Some(p)) = (&dir, &path) {
        // Write to a private name, then rename: readers never see a partial file.
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        let ok = std::fs::create_dir_all(d).is_ok() && std::fs::write(&tmp, &bin).is_ok();
        if !ok || std::fs::rename(&tmp, p).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(bin)
}

/// Compile every unit for `arch` (bypassing the cache) and return the kernel names.
pub fn compile_check(arch: &str) -> Result<Vec<&'static str>> {
    check_arch(arch)?;
    version()?;
    let opts = options(arch);
    // Units are independent NVRTC programs; compile them side by side.
    std::thread::scope(|s| {
        let jobs: Vec<_> = UNITS
            .iter()
            .map(|unit| s.spawn(|| compile_unit(unit, arch, &opts)))
            .collect();
        jobs.into_iter().try_for_each(|j| {
            j.join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map(|_| ())
        })
    })?;
    Ok(sources::kernel_names())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVRTC found through `MLVEC_NVRTC_PATH` (set by scripts/test.sh from the nvidia wheels).
    fn nvrtc_here() -> bool {
        match version() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("skipping NVRTC compile test: {e}");
                false
            }
        }
    }

    #[test]
    fn every_kernel_compiles_for_sm80_and_sm90() {
        if !nvrtc_here() {
            return;
        }
        for arch in ["sm_80", "sm_90"] {
            let names = compile_check(arch).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(names.len(), sources::kernel_names().len());
        }
    }

    #[test]
    fn cache_round_trip_and_key_changes_with_arch() {
        if !nvrtc_here() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("mlvec-cuda-test-{}", std::process::id()));
        configure(None, None, Some(dir.clone()));
        let unit = &UNITS[3];
        let a = cubin(unit, "sm_80").unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let b = cubin(unit, "sm_80").unwrap();
        assert_eq!(a, b);
        let _ = cubin(unit, "sm_90").unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_arch_is_rejected_without_nvrtc() {
        assert!(matches!(check_arch("sm_70"), Err(Error::Invalid { .. })));
        assert!(matches!(check_arch("compute_90"), Err(Error::Invalid { .. })));
        assert!(check_arch("sm_90a").is_ok());
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(&[b"a", b"b"]), fnv1a(&[b"ab"]));
    }
}
