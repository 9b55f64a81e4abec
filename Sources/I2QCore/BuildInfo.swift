import CI2QBuildInfo

/// What this binary was built from (printed by `i2q --version`): `make` records the git commit and
/// the date; a plain `swift build` says "unknown" and the compiler's date.
public enum I2QBuild {
    public static var commit: String { String(cString: i2q_build_commit()) }
    public static var date: String { String(cString: i2q_build_date()) }
    /// The CPU the Swift code was compiled for (`haswell` unless I2Q_TARGET_CPU said otherwise).
    public static var targetCPU: String { String(cString: i2q_build_target_cpu()) }
}
