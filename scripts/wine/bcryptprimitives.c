/*
 * Stand-in for Windows' bcryptprimitives.dll, which Debian's Wine 8 does not
 * ship. Rust's std (1.78 and later) imports ProcessPrng from it to seed its
 * hash maps; without it every Rust .exe fails to start under Wine. This DLL
 * exports ProcessPrng and forwards it to RtlGenRandom (advapi32's
 * SystemFunction036), which Wine does implement.
 *
 * Built by scripts/wine-setup with x86_64-w64-mingw32-gcc and copied into the
 * Wine prefix's system32. It is test scaffolding only; nothing ships it.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
