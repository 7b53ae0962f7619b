/* scripts/platforms' check of the Windows DLL under wine: it loads (every DLL it imports is
 * there) and a UniFFI call into it returns. Prints the library's UniFFI contract version, which
 * the generated bindings compare with their own at load. Exit 1 with the reason otherwise. */
#include <stdio.h>
#include <windows.h>

typedef unsigned int (*contract_version_fn)(void);

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: load-ffi PATH\\sessionkit_ffi.dll\n");
        return 1;
    }
    HMODULE lib = LoadLibraryA(argv[1]);
    if (!lib) {
        fprintf(stderr, "LoadLibrary(%s) failed: error %lu\n", argv[1], GetLastError());
        return 1;
    }
    contract_version_fn f =
        (contract_version_fn)GetProcAddress(lib, "ffi_sessionkit_ffi_uniffi_contract_version");
    if (!f) {
        fprintf(stderr, "ffi_sessionkit_ffi_uniffi_contract_version is not exported\n");
        return 1;
    }
    printf("uniffi contract version %u\n", f());
    return 0;
}
