// Symbols that ml-metadata / tensorflow-data-validation 1.21 wheels (manylinux_2_39)
// reference but glibc < 2.38 and libstdc++ < GCC 13 do not define. Exported under the
// version names the wheels ask for (see glibc_shim.map); tools/glibc_compat.py marks
// those version requirements weak so the dynamic linker resolves them here.
#include <cstdlib>
#include <exception>
#include <iostream>

extern "C" {
long __isoc23_strtol(const char* s, char** end, int base) { return std::strtol(s, end, base); }
unsigned long __isoc23_strtoul(const char* s, char** end, int base) { return std::strtoul(s, end, base); }
long long __isoc23_strtoll(const char* s, char** end, int base) { return std::strtoll(s, end, base); }
unsigned long long __isoc23_strtoull(const char* s, char** end, int base) { return std::strtoull(s, end, base); }
// GCC 14 calls this when an exception escapes a noexcept function.
[[noreturn]] void __cxa_call_terminate(void*) noexcept { std::terminate(); }
}

namespace std {
// GCC 13 replaced the per-TU ios_base::Init objects with this call; including
// <iostream> above gives this library its own Init object, which is all it needs.
void ios_base_library_init() {}
}
