//! Reading and writing the guest's linear memory, bounds-checked: a filter that passes a bad
//! pointer gets `InvalidMemoryAccess`, the host never panics.

use wasmtime::{Caller, Extern, Memory};

use crate::abi::{len_u32, status};
use crate::vm::VmState;

fn memory(caller: &mut Caller<'_, VmState>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

fn range(ptr: u32, len: u32) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    Some(start..end)
}

/// Copies `len` bytes at `ptr` out of the guest.
pub(crate) fn read(caller: &mut Caller<'_, VmState>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    mem.data(&*caller).get(range(ptr, len)?).map(<[u8]>::to_vec)
}

/// Copies a UTF-8 string out of the guest (invalid bytes are replaced, never a failure).
pub(crate) fn read_string(caller: &mut Caller<'_, VmState>, ptr: u32, len: u32) -> Option<String> {
    read(caller, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Writes `data` at `ptr` in the guest.
pub(crate) fn write(caller: &mut Caller<'_, VmState>, ptr: u32, data: &[u8]) -> bool {
    let Some(mem) = memory(caller) else {
        return false;
    };
    let Some(r) = range(ptr, len_u32(data.len())) else {
        return false;
    };
    match mem.data_mut(&mut *caller).get_mut(r) {
        Some(slot) => {
            slot.copy_from_slice(data);
            true
        }
        None => false,
    }
}

pub(crate) fn write_u32(caller: &mut Caller<'_, VmState>, ptr: u32, value: u32) -> bool {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Caller<'_, VmState>, ptr: u32, value: u64) -> bool {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands `data` to the guest the way the ABI returns values: memory is allocated by the guest's
/// own `proxy_on_memory_allocate` (the guest then owns and frees it), the bytes are copied in and
/// the pointer and length written to `ret_ptr` / `ret_len`. Returns the status for the guest; a
/// trap inside the allocator is passed on as a trap.
pub(crate) fn hand_over(
    caller: &mut Caller<'_, VmState>,
    data: &[u8],
    ret_ptr: u32,
    ret_len: u32,
) -> wasmtime::Result<u32> {
    let Some(alloc) = caller
        .get_export("proxy_on_memory_allocate")
        .or_else(|| caller.get_export("malloc"))
        .and_then(Extern::into_func)
    else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let alloc = alloc.typed::<u32, u32>(&*caller)?;
    let len = len_u32(data.len());
    let ptr = alloc.call(&mut *caller, len)?;
    if ptr == 0 && len > 0 {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    if !write(caller, ptr, data)
        || !write_u32(caller, ret_ptr, ptr)
        || !write_u32(caller, ret_len, len)
    {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    Ok(status::OK)
}
