//! The WASI preview1 calls Envoy offers a proxy-wasm module, and nothing more: no files, no
//! sockets. stdout and stderr become log lines (info and error), as in Envoy.

use wasmtime::{Caller, Linker};

use crate::abi::{self, LogLevel};
use crate::memory::{read, write, write_u32, write_u64};
use crate::shared_data::lock;
use crate::vm::VmState;

type C<'a> = Caller<'a, VmState>;

mod errno {
    pub const SUCCESS: u32 = 0;
    pub const BADF: u32 = 8;
    pub const FAULT: u32 = 21;
    pub const INVAL: u32 = 28;
    pub const SPIPE: u32 = 70;
}

/// WASI `filetype::character_device`.
const CHARACTER_DEVICE: u8 = 2;

pub(crate) fn define(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    let wasi = abi::WASI_MODULE;

    linker.func_wrap(
        wasi,
        "fd_write",
        |mut c: C<'_>, fd: u32, iovs: u32, iovs_len: u32, ret: u32| -> u32 {
            let level = match fd {
                1 => LogLevel::Info,
                2 => LogLevel::Error,
                _ => return errno::BADF,
            };
            let Some(bytes) = gather(&mut c, iovs, iovs_len) else {
                return errno::FAULT;
            };
            let written = abi::len_u32(bytes.len());
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches('\n');
            if !text.is_empty() {
                c.data().log(level, text.to_owned());
            }
            if write_u32(&mut c, ret, written) {
                errno::SUCCESS
            } else {
                errno::FAULT
            }
        },
    )?;

    linker.func_wrap(
        wasi,
        "fd_read",
        |mut c: C<'_>, fd: u32, _iovs: u32, _iovs_len: u32, ret: u32| -> u32 {
            // stdin is always at its end.
            if fd != 0 {
                return errno::BADF;
            }
            if write_u32(&mut c, ret, 0) {
                errno::SUCCESS
            } else {
                errno::FAULT
            }
        },
    )?;

    linker.func_wrap(
        wasi,
        "fd_seek",
        |_: C<'_>, fd: u32, _offset: i64, _whence: u32, _ret: u32| -> u32 {
            if fd <= 2 { errno::SPIPE } else { errno::BADF }
        },
    )?;

    linker.func_wrap(wasi, "fd_close", |_: C<'_>, fd: u32| -> u32 {
        if fd <= 2 { errno::SUCCESS } else { errno::BADF }
    })?;

    linker.func_wrap(
        wasi,
        "fd_fdstat_get",
        |mut c: C<'_>, fd: u32, ret: u32| -> u32 {
            if fd > 2 {
                return errno::BADF;
            }
            // struct fdstat { u8 filetype; u16 flags; u64 rights_base; u64 rights_inheriting } (24 bytes)
            let mut stat = [0u8; 24];
            stat[0] = CHARACTER_DEVICE;
            if write(&mut c, ret, &stat) {
                errno::SUCCESS
            } else {
                errno::FAULT
            }
        },
    )?;

    linker.func_wrap(
        wasi,
        "environ_sizes_get",
        |mut c: C<'_>, ret_count: u32, ret_size: u32| -> u32 {
            let vars = environment(&c);
            let size: usize = vars.iter().map(Vec::len).sum();
            let ok = write_u32(&mut c, ret_count, abi::len_u32(vars.len()))
                && write_u32(&mut c, ret_size, abi::len_u32(size));
            if ok { errno::SUCCESS } else { errno::FAULT }
        },
    )?;

    linker.func_wrap(
        wasi,
        "environ_get",
        |mut c: C<'_>, ptrs: u32, buf: u32| -> u32 {
            let vars = environment(&c);
            write_strings(&mut c, &vars, ptrs, buf)
        },
    )?;

    linker.func_wrap(
        wasi,
        "args_sizes_get",
        |mut c: C<'_>, ret_count: u32, ret_size: u32| -> u32 {
            // A proxy-wasm module has no command line.
            if write_u32(&mut c, ret_count, 0) && write_u32(&mut c, ret_size, 0) {
                errno::SUCCESS
            } else {
                errno::FAULT
            }
        },
    )?;

    linker.func_wrap(wasi, "args_get", |_: C<'_>, _ptrs: u32, _buf: u32| -> u32 {
        errno::SUCCESS
    })?;

    linker.func_wrap(
        wasi,
        "proc_exit",
        |c: C<'_>, code: u32| -> wasmtime::Result<()> {
            c.data()
                .log(LogLevel::Critical, format!("proc_exit({code})"));
            Err(wasmtime::Error::msg(format!(
                "the module called proc_exit({code})"
            )))
        },
    )?;

    linker.func_wrap(
        wasi,
        "clock_time_get",
        |mut c: C<'_>, clock: u32, _precision: u64, ret: u32| -> u32 {
            // realtime, monotonic, process and thread CPU time: all read the test's clock, so
            // nothing in the module can observe real time passing.
            if clock > 3 {
                return errno::INVAL;
            }
            let now = c.data().host.clock.now_nanos();
            if write_u64(&mut c, ret, now) {
                errno::SUCCESS
            } else {
                errno::FAULT
            }
        },
    )?;

    linker.func_wrap(
        wasi,
        "random_get",
        |mut c: C<'_>, buf: u32, len: u32| -> u32 {
            let Ok(len) = usize::try_from(len) else {
                return errno::FAULT;
            };
            let mut bytes = vec![0u8; len];
            let state = &mut c.data_mut().rng;
            for chunk in bytes.chunks_mut(8) {
                let word = splitmix64(state).to_le_bytes();
                let n = chunk.len();
                chunk.copy_from_slice(word.get(..n).unwrap_or(&word));
            }
            if write(&mut c, buf, &bytes) {
                errno::SUCCESS
            } else {
                errno::FAULT
            }
        },
    )?;

    Ok(())
}

/// Concatenates the `iovec`s (`{ u32 ptr, u32 len }`) at `iovs`.
fn gather(c: &mut C<'_>, iovs: u32, count: u32) -> Option<Vec<u8>> {
    let table = read(c, iovs, count.checked_mul(8)?)?;
    let mut out = Vec::new();
    for entry in table.chunks_exact(8) {
        let ptr = u32::from_le_bytes(entry.get(..4)?.try_into().ok()?);
        let len = u32::from_le_bytes(entry.get(4..)?.try_into().ok()?);
        out.extend_from_slice(&read(c, ptr, len)?);
    }
    Some(out)
}

/// `KEY=VALUE\0` for each environment variable the test set.
fn environment(c: &C<'_>) -> Vec<Vec<u8>> {
    lock(&c.data().host.settings)
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect()
}

/// Lays out strings as WASI expects: a table of pointers at `ptrs`, the bytes at `buf`.
fn write_strings(c: &mut C<'_>, strings: &[Vec<u8>], ptrs: u32, buf: u32) -> u32 {
    let mut at = buf;
    for (i, s) in strings.iter().enumerate() {
        let Some(slot) = u32::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(4))
            .and_then(|o| ptrs.checked_add(o))
        else {
            return errno::FAULT;
        };
        if !write_u32(c, slot, at) || !write(c, at, s) {
            return errno::FAULT;
        }
        at = at.saturating_add(abi::len_u32(s.len()));
    }
    errno::SUCCESS
}

/// A small, fast, well-known PRNG: reproducible `random_get` output per VM.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
