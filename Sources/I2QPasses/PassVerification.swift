import Foundation
import I2QCore
import I2QEval
import I2QFormats

/// `--verify` on cast / quantize / fuse: after the pass has written its output (still under the
/// temporary name), `i2q verify` runs it against the pass's input on the same data, and the result is
/// kept with the model — a `verify` record appended to the .i2q provenance (`i2q inspect` lists it), or
/// `i2q_verify.json` inside an HF directory output (safetensors has no place for provenance).
public enum PassVerification {
    /// The `beforeCommit` hook of OutputSettings that does it. `onReport` sees the report (to print it).
    public static func hook(reference: String, options: VerifyOptions,
                            onReport: @escaping @Sendable (VerifyReport) -> Void) -> @Sendable (String) throws -> Void {
        return { tempPath in
            let report = try Verifier.run(candidate: tempPath, reference: reference, options: options)
            onReport(report)
            if FileSystem.isDirectory(tempPath) {
                try FileSystem.writeFile(tempPath + "/i2q_verify.json", Array((report.jsonString() + "\n").utf8))
            } else {
                let record = PassRecord(name: "verify", params: summary(report, reference: reference))
                try I2QFile.rewriteMetadata(path: tempPath) { $0.provenance.passes.append(record) }
            }
        }
    }

    /// The headline numbers of a report (the full report is `i2q verify --json`; docs/verify.md).
    public static func summary(_ r: VerifyReport, reference: String) -> [(String, JSONValue)] {
        func num(_ x: Double) -> JSONValue { x.isFinite ? .number(String(format6(x))) : .null }
        var p: [(String, JSONValue)] = [("reference", .string(reference))]
        if let t = r.text {
            let s = t.stats
            p += [("text", .string(t.file)), ("tokens", .int(s.count)), ("ctx", .int(t.ctx)),
                  ("ppl", num(s.pplCandidate)), ("ppl_reference", num(s.pplBase)), ("ppl_ratio", num(s.pplRatio)),
                  ("mean_kld", num(s.kldMean)), ("same_top", num(s.sameTop))]
        }
        if let d = r.docvqa {
            p += [("docvqa", .string(d.directory)), ("questions", .int(d.items.count)),
                  ("anls", num(d.anlsCandidate)), ("anls_reference", num(d.anlsBase)), ("anls_agreement", num(d.anlsAgreement))]
        }
        p.append(("seconds", num(r.seconds)))
        return p
    }

    /// Six significant digits, as a JSON number.
    static func format6(_ x: Double) -> String {
        let s = "\(Double(String(format: "%.6g", x)) ?? x)"
        return s
    }
}
