import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `i2q <verb> org/name`: the model read from the local Hugging Face cache (issue 20). The cache is
/// built per test around the committed Tests/Fixtures/tiny-idefics2-v4 (blobs are symlinks to its
/// files), laid out as huggingface_hub does (HubCacheTests checks that layout against huggingface_hub).
final class HubCacheCLITests: CLITestCase {
    override var tempPrefix: String { "hubcli" }
    let commit = "0123456789abcdef0123456789abcdef01234567"
    var hub: String { dir + "/hub" }
    var snapshot: String { hub + "/models--tiny-org--idefics2-v4/snapshots/" + commit }

    override func setUpWithError() throws {
        try super.setUpWithError()
        let fm = FileManager.default
        let base = hub + "/models--tiny-org--idefics2-v4"
        try fm.createDirectory(atPath: base + "/blobs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: base + "/refs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        try write(Array(commit.utf8), to: base + "/refs/main")
        try write(Array(commit.utf8), to: base + "/refs/v1")
        let model = fixturesDir + "/tiny-idefics2-v4"
        for (i, name) in try FileSystem.listDirectory(model).enumerated() {
            let blob = String(format: "%064x", i + 1)
            try fm.createSymbolicLink(atPath: base + "/blobs/" + blob, withDestinationPath: model + "/" + name)
            try fm.createSymbolicLink(atPath: snapshot + "/" + name, withDestinationPath: "../../blobs/" + blob)
        }
    }

    /// Runs i2q with the HF cache variables of this process removed, `env` added, in `cwd`.
    func runHub(_ args: [String], env: [String: String]? = nil, cwd: String? = nil) throws -> (code: Int32, out: String, err: String) {
        try run(args, env: env ?? ["HF_HUB_CACHE": hub], unset: ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"], cwd: cwd)
    }

    func testInspectRepoIDPrintsWhatTheDirectoryPrints() throws {
        let direct = try runHub(["inspect", snapshot])
        XCTAssertEqual(direct.code, 0, direct.err)
        for args in [["inspect", "tiny-org/idefics2-v4"], ["inspect", "tiny-org/idefics2-v4", "--revision", "v1"],
                     ["inspect", "tiny-org/idefics2-v4", "--revision", commit]] {
            let r = try runHub(args)
            XCTAssertEqual(r.code, 0, r.err)
            XCTAssertEqual(r.out, direct.out, "\(args)")
            XCTAssertTrue(r.err.contains("note: tiny-org/idefics2-v4: revision "), r.err)
            XCTAssertTrue(r.err.contains("from the Hugging Face cache: \(snapshot)"), r.err)
        }
        let json = try runHub(["inspect", "tiny-org/idefics2-v4", "--json"])
        XCTAssertEqual(json.out, try runHub(["inspect", snapshot, "--json"]).out)
        // HF_HOME/hub when HF_HUB_CACHE is not set.
        try FileManager.default.createDirectory(atPath: dir + "/home", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: hub, toPath: dir + "/home/hub")
        let viaHome = try runHub(["inspect", "tiny-org/idefics2-v4"], env: ["HF_HOME": dir + "/home"])
        XCTAssertEqual(viaHome.code, 0, viaHome.err)
        XCTAssertTrue(viaHome.out.hasPrefix(dir + "/home/hub/models--tiny-org--idefics2-v4/snapshots/" + commit + "\n"), viaHome.out)
    }

    func testWritingVerbReadsTheRepoID() throws {
        let r = try runHub(["cast", "tiny-org/idefics2-v4", "--dtype", "bf16", "-o", dir + "/m.i2q"])
        XCTAssertEqual(r.code, 0, r.err)
        let direct = try runHub(["cast", snapshot, "--dtype", "bf16", "-o", dir + "/d.i2q"])
        XCTAssertEqual(direct.code, 0, direct.err)
        // Same tensors; the provenance names the snapshot folder either way.
        let a = try runHub(["inspect", dir + "/m.i2q", "--json"]).out, b = try runHub(["inspect", dir + "/d.i2q", "--json"]).out
        XCTAssertEqual(a.replacingOccurrences(of: "m.i2q", with: "d.i2q"), b)
    }

    func testMissingRepoIDAndRevisionAreOneClearLine() throws {
        let missing = try runHub(["inspect", "HuggingFaceM4/idefics2-8b"])
        XCTAssertEqual(missing.code, 1)
        XCTAssertEqual(missing.out, "")
        XCTAssertEqual(missing.err, "error: HuggingFaceM4/idefics2-8b: not a local path, and not in the Hugging Face cache at \(hub) (models--HuggingFaceM4--idefics2-8b); download it with `hf download HuggingFaceM4/idefics2-8b` or pass a directory\n")
        let rev = try runHub(["run", "tiny-org/idefics2-v4", "--revision", "v2", "--prompt", "x"])
        XCTAssertEqual(rev.code, 1)
        XCTAssertEqual(rev.err, "error: tiny-org/idefics2-v4: revision \"v2\" is not in the Hugging Face cache: no \(hub)/models--tiny-org--idefics2-v4/refs/v2 (refs there: main, v1; snapshots: \(commit)); download it with `hf download tiny-org/idefics2-v4 --revision v2` or pass --revision with one of those\n")
        let local = try runHub(["inspect", snapshot, "--revision", "main"])
        XCTAssertEqual(local.code, 1)
        XCTAssertEqual(local.err, "error: --revision main applies to Hugging Face repo ids (org/name); \(snapshot) is a local path\n")
        // Not of the form org/name: the plain missing-path error, as before.
        let plain = try runHub(["inspect", "./nope/x"])
        XCTAssertEqual(plain.code, 1)
        XCTAssertEqual(plain.err, "error: ./nope/x does not exist\n")
    }

    func testLocalPathWinsOverRepoID() throws {
        try FileManager.default.createDirectory(atPath: dir + "/tiny-org", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/tiny-org/idefics2-v4", withDestinationPath: fixturesDir + "/tiny-llama")
        let r = try runHub(["inspect", "tiny-org/idefics2-v4"], cwd: dir)
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.hasPrefix("tiny-org/idefics2-v4\n  model_type: llama\n"), r.out)
        XCTAssertFalse(r.err.contains("Hugging Face cache"), r.err)
    }

    func testIncompleteSnapshotNamesTheFile() throws {
        let shard = "model-00004-of-00006.safetensors"
        let link = snapshot + "/" + shard
        let blob = FileSystem.basename(try FileManager.default.destinationOfSymbolicLink(atPath: link))
        let blobPath = hub + "/models--tiny-org--idefics2-v4/blobs/" + blob
        try FileManager.default.removeItem(atPath: blobPath)
        try write(Array(repeating: 0, count: 1000), to: blobPath + ".incomplete")
        let r = try runHub(["quantize", "tiny-org/idefics2-v4", "-o", dir + "/q.i2q"])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.err.hasPrefix("error: tiny-org/idefics2-v4 (revision main, commit \(commit)): the cached snapshot \(snapshot) is incomplete: \(shard) links to blobs/\(blob), which is missing; blobs/\(blob).incomplete holds 1000 bytes of an interrupted download; finish the download with `hf download tiny-org/idefics2-v4`\n"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/q.i2q"))
    }
}
