/* For tests under wine only (scripts/test-windows), never shipped: Rust's standard library on
 * Windows takes its random bytes from ProcessPrng in bcryptprimitives.dll (Windows 10 and
 * later), which wine 8 does not have. This stands in for it with BCryptGenRandom, which wine
 * has, asking the system's preferred generator as ProcessPrng does. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    /* BCryptGenRandom takes a ULONG length: larger requests go in chunks. */
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
