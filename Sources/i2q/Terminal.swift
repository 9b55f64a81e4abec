import I2QCore
#if canImport(Glibc)
import Glibc
#endif

func printError(_ s: String) {
    writeStderr(s + "\n")
}

/// On SIGINT/SIGTERM, remove temporaries of outputs still being written, then exit.
func installInterruptCleanup() {
    let handler: @convention(c) (Int32) -> Void = { sig in
        StagedOutput.removeAllUncommitted()
        writeStderr("\ninterrupted: partial output removed\n")
        InterruptHint.write()
        _exit(128 + sig)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
    InputFault.install { StagedOutput.removeAllUncommitted() }
}
