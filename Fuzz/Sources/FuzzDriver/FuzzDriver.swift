#if canImport(Glibc)
    import Glibc
#endif

/// libFuzzer's entry point for programs that have a `main` of their own (libFuzzer's FuzzerDriver.cpp).
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// Runs libFuzzer with this process's arguments on `target` and exits with its status.
///
/// SwiftPM links an executable with its own `main` (the module's entry point), which shadows libFuzzer's; so
/// each target's main.swift hands control to libFuzzer's driver here.
public func runFuzzer(_ target: @escaping @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    registeredTarget = target
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}

/// Set once, before libFuzzer starts, and only read afterwards (libFuzzer runs inputs on one thread).
nonisolated(unsafe) private var registeredTarget: (@convention(c) (UnsafePointer<UInt8>?, Int) -> CInt)?

/// The symbol libFuzzer's runtime expects to exist (its own `main`, unused here, refers to it).
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    registeredTarget?(data, size) ?? 0
}
