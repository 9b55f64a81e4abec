import Foundation
import XCTest
import I2QCore
@testable import I2QFormats
import I2QTestSupport

/// Repo ids read from the local Hugging Face cache (issue 20), against huggingface_hub 2.4's own
/// answers: Tests/Fixtures/hub-cache/expected.json (scripts/fixtures/make_hub_cache_goldens.py) holds a
/// cache layout, which `setUp` rebuilds in a temporary directory, and what snapshot_download,
/// try_to_load_from_cache and scan_cache_dir said about it; plus HF_HUB_CACHE for environments.
final class HubCacheTests: XCTestCase {
    var dir = ""
    var root = ""
    var golden: JSONValue = .null
    /// state of each (repo, commit, path) of the layout.
    var states: [String: String] = [:]

    override func setUpWithError() throws {
        golden = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/hub-cache/expected.json"), source: "expected.json")
        dir = try makeTempDir("hub")
        root = dir + "/hub"
        try buildLayout(golden["layout"]!, at: root)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// The layout exactly as make_hub_cache_goldens.py's `build` writes it.
    func buildLayout(_ layout: JSONValue, at root: String) throws {
        let fm = FileManager.default
        for repo in layout["repos"]!.arrayValue! {
            let id = repo["repo_id"]!.stringValue!, folder = repo["folder"]!.stringValue!
            XCTAssertEqual(HubCache.folderName(repoID: id), folder)
            let base = root + "/" + folder
            try fm.createDirectory(atPath: base + "/blobs", withIntermediateDirectories: true)
            for (name, commit) in repo["refs"]!.objectEntries! {
                let p = base + "/refs/" + name
                try fm.createDirectory(atPath: FileSystem.dirname(p), withIntermediateDirectories: true)
                try write(Array(commit.stringValue!.utf8), to: p)
            }
            for (commit, files) in repo["snapshots"]!.objectEntries! {
                let snap = base + "/snapshots/" + commit
                try fm.createDirectory(atPath: snap, withIntermediateDirectories: true)
                for f in files.arrayValue! {
                    let path = f["path"]!.stringValue!, blob = f["blob"]!.stringValue!, state = f["state"]!.stringValue!
                    let data = Array(f["text"]!.stringValue!.utf8)
                    states[id + "@" + commit + ":" + path] = state
                    if state == "complete" {
                        try write(data, to: base + "/blobs/" + blob)
                    } else if state == "blob_incomplete" || state == "not_linked" {
                        try write(Array(data[0..<(data.count / 2)]), to: base + "/blobs/" + blob + ".incomplete")
                    }
                    if state == "complete" || state == "blob_incomplete" {
                        let parts = path.split(separator: "/")
                        let link = snap + "/" + path
                        try fm.createDirectory(atPath: FileSystem.dirname(link), withIntermediateDirectories: true)
                        try fm.createSymbolicLink(atPath: link, withDestinationPath: String(repeating: "../", count: parts.count + 1) + "blobs/" + blob)
                    }
                }
            }
            for commit in repo["tree_cache"]!.arrayValue!.map({ $0.stringValue! }) {
                let files = repo["snapshots"]![commit]!.arrayValue!.sorted { $0["path"]!.stringValue! < $1["path"]!.stringValue! }
                let entries: [(String, JSONValue)] = files.map { f in
                    let text = f["text"]!.stringValue!
                    return (f["path"]!.stringValue!, .object([
                        ("size", .int(text.utf8.count)), ("blob_id", f["git_blob_id"]!),
                        ("lfs_sha256", .string(f["blob"]!.stringValue!)), ("lfs_size", .int(text.utf8.count)),
                    ]))
                }
                try fm.createDirectory(atPath: base + "/trees", withIntermediateDirectories: true)
                try write(Array(JSONWriter.string(.object([("format_version", .int(1)), ("files", .object(entries))]), indent: 1).utf8),
                          to: base + "/trees/" + commit + ".json")
            }
        }
    }

    // MARK: resolutions

    func testEveryResolutionAgreesWithHuggingFaceHub() throws {
        let cache = HubCache(root: root)
        let resolutions = golden["resolutions"]!.arrayValue!
        XCTAssertGreaterThanOrEqual(resolutions.count, 17)
        for r in resolutions {
            let id = r["repo_id"]!.stringValue!, rev = r["revision"]!.stringValue
            let what = "\(id) @ \(rev ?? "(default)")"
            let sd = r["snapshot_download"]!
            let commit = r["commit"]!.stringValue
            let missing = r["missing_files"]!.arrayValue!.map { $0.stringValue! }
            // huggingface_hub's "missing" includes files left out on purpose (not_downloaded): i2q
            // counts only those an interrupted download left (a dangling link, an .incomplete blob).
            let interrupted = missing.filter { states[id + "@" + (commit ?? "") + ":" + $0] != "not_downloaded" }
            do {
                let s = try cache.resolve(repoID: id, revision: rev)
                XCTAssertTrue(interrupted.isEmpty, "\(what): resolved although \(interrupted) are incomplete")
                let expected = sd["path"]?.stringValue ?? (sd["error"]?.stringValue == "IncompleteSnapshotError" ? "models--" + id.replacingOccurrences(of: "/", with: "--") + "/snapshots/" + commit! : nil)
                XCTAssertEqual(s.path, expected.map { root + "/" + $0 }, what)
                XCTAssertEqual(s.commit, commit, what)
                XCTAssertEqual(s.revision, rev ?? "main", what)
                // Every file huggingface_hub finds cached is there, and the ones it does not are not.
                for (name, hit) in r["try_to_load_from_cache"]!.objectEntries! {
                    if let h = hit.stringValue {
                        XCTAssertEqual(root + "/" + h, s.path + "/" + name, what)
                        XCTAssertTrue(FileSystem.exists(s.path + "/" + name), "\(what): \(name)")
                    } else {
                        XCTAssertFalse(FileSystem.exists(s.path + "/" + name), "\(what): \(name) is not cached for huggingface_hub")
                    }
                }
            } catch let e as HubCacheError {
                switch e {
                case let .incomplete(_, _, c, _, files):
                    XCTAssertEqual(c, commit, what)
                    XCTAssertEqual(files.map(\.path), interrupted, what)
                    XCTAssertFalse(interrupted.isEmpty, what)
                case .notCached:
                    XCTAssertEqual(sd["error"]?.stringValue, "LocalEntryNotFoundError", what)
                    XCTAssertFalse(FileSystem.exists(root + "/" + HubCache.folderName(repoID: id)), what)
                case .revisionNotFound:
                    XCTAssertEqual(sd["error"]?.stringValue, "LocalEntryNotFoundError", what)
                    XCTAssertNil(commit, what)
                case let .snapshotMissing(_, _, c, _, _, _):
                    XCTAssertEqual(sd["error"]?.stringValue, "LocalEntryNotFoundError", what)
                    XCTAssertEqual(c, commit, what)
                default:
                    XCTFail("\(what): \(e)")
                }
            }
        }
    }

    /// scan_cache_dir's refs and files of every repo it lists (it skips a repo with a broken link).
    func testRefsAndFilesAgreeWithScanCacheDir() throws {
        let cache = HubCache(root: root)
        let repos = golden["scan"]!["repos"]!.arrayValue!
        XCTAssertFalse(repos.isEmpty)
        for repo in repos {
            let id = repo["repo_id"]!.stringValue!
            var want: [String: String] = [:]
            for v in repo["revisions"]!.arrayValue! {
                let commit = v["commit"]!.stringValue!
                for ref in v["refs"]!.arrayValue! { want[ref.stringValue!] = commit }
                XCTAssertEqual(HubFiles.walk(root + "/" + v["snapshot"]!.stringValue!), v["files"]!.arrayValue!.map { $0.stringValue! }, id)
                for ref in v["refs"]!.arrayValue! {
                    XCTAssertEqual(try cache.resolve(repoID: id, revision: ref.stringValue!).path, root + "/" + v["snapshot"]!.stringValue!, id)
                }
            }
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: cache.refs(of: id).map { ($0.name, $0.commit) }), want, id)
        }
        // The repo scan_cache_dir gave up on: its refs, nested ones included, are still listed.
        XCTAssertEqual(cache.refs(of: "test-org/tiny-model").map(\.name), ["broken", "gone", "interrupted", "main", "partial", "refs/pr/1", "v1.0"])
    }

    // MARK: cache root

    func testCacheRootFollowsHuggingFaceHubConstants() throws {
        let cases = golden["environment"]!["cases"]!.arrayValue!
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for c in cases {
            let env = Dictionary(uniqueKeysWithValues: c["env"]!.objectEntries!.map { ($0.0, $0.1.stringValue!) })
            XCTAssertEqual(HubCache.root(environment: env), c["hf_hub_cache"]!.stringValue!, "\(env)")
        }
    }

    func testPythonPathHelpers() {
        XCTAssertEqual(PythonPath.expandVars("$A$B/${A}x/$/${/$A_1", ["A": "1", "B": "$A", "A_1": "z"]), "1$A/1x/$/${/z")
        XCTAssertEqual(PythonPath.expandUser("~nonexistent-user-xyz/x", [:]), "~nonexistent-user-xyz/x")
        XCTAssertEqual(PythonPath.expandUser("~/x", ["HOME": "/h/"]), "/h/x")
        XCTAssertEqual(PythonPath.expandUser("~", ["HOME": ""]), "/")
        XCTAssertEqual(PythonPath.join("", "hub"), "hub")
        XCTAssertEqual(PythonPath.join("/a/", "hub"), "/a/hub")
    }

    // MARK: inputs

    func testRepoIDForm() {
        for id in ["HuggingFaceM4/idefics2-8b", "a/b", "Org_2.x/name.v2-x_y", "_a/b_", "1/2"] {
            XCTAssertTrue(HubCache.isRepoID(id), id)
        }
        for s in ["model", "./model", "../x/y", "a/b/c", "/abs/path", "a/", "/b", "a--b/c", "a/b..c", "a/b.git",
                  "-a/b", "a/b-", ".a/b", "a/b.", "a b/c", "café/x", "a/" + String(repeating: "x", count: 97), "a/b\n"] {
            XCTAssertFalse(HubCache.isRepoID(s), s)
        }
    }

    func testLocalPathWinsAndRevisionNeedsARepoID() throws {
        let cache = HubCache(root: root)
        // An absolute path is never a repo id; a missing one comes back unchanged (the opener reports it).
        let r = try ModelInput.resolve([dir, dir + "/missing"], revision: nil, cache: cache)
        XCTAssertEqual(r, [.init(path: dir, snapshot: nil), .init(path: dir + "/missing", snapshot: nil)])
        // A relative path that exists wins over the repo id of the same spelling.
        let cwd = FileManager.default.currentDirectoryPath
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        try FileManager.default.createDirectory(atPath: dir + "/test-org/tiny-model", withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir))
        XCTAssertEqual(try ModelInput.resolve(["test-org/tiny-model"], revision: nil, cache: cache), [.init(path: "test-org/tiny-model", snapshot: nil)])
        try FileManager.default.removeItem(atPath: dir + "/test-org")
        let hub = try ModelInput.resolve(["test-org/tiny-model", dir], revision: "v1.0", cache: cache)
        XCTAssertEqual(hub[0].path, root + "/models--test-org--tiny-model/snapshots/" + String(repeating: "2", count: 40))
        XCTAssertEqual(hub[0].snapshot?.commit, String(repeating: "2", count: 40))
        XCTAssertEqual(hub[1], .init(path: dir, snapshot: nil))
        XCTAssertThrowsError(try ModelInput.resolve([dir], revision: "main", cache: cache)) { e in
            XCTAssertEqual(e as? HubCacheError, .revisionWithoutRepoID(revision: "main", inputs: [dir]))
            XCTAssertTrue("\(e)".contains("--revision main applies to Hugging Face repo ids"), "\(e)")
        }
        for bad in ["", "..", "a/../b", "/abs", "a//b", "./x"] {
            XCTAssertThrowsError(try cache.resolve(repoID: "test-org/tiny-model", revision: bad)) { e in
                XCTAssertEqual(e as? HubCacheError, .badRevision(bad))
            }
        }
    }

    // MARK: messages

    func testErrorsNameWhatWasLookedForAndWhere() throws {
        let cache = HubCache(root: root)
        func message(_ id: String, _ rev: String?) -> String {
            do { _ = try cache.resolve(repoID: id, revision: rev); return "" } catch { return "\(error)" }
        }
        XCTAssertEqual(message("HuggingFaceM4/idefics2-8b", nil),
                       "HuggingFaceM4/idefics2-8b: not a local path, and not in the Hugging Face cache at \(root) (models--HuggingFaceM4--idefics2-8b); download it with `hf download HuggingFaceM4/idefics2-8b` or pass a directory")
        let folder = root + "/models--test-org--tiny-model"
        let c = { (d: Character) in String(repeating: d, count: 40) }
        XCTAssertEqual(message("test-org/tiny-model", "no-such-branch"),
                       "test-org/tiny-model: revision \"no-such-branch\" is not in the Hugging Face cache: no \(folder)/refs/no-such-branch (refs there: broken, gone, interrupted, main, partial, refs/pr/1, v1.0; snapshots: \(c("1")), \(c("2")), \(c("3")), \(c("4")), \(c("9"))); download it with `hf download test-org/tiny-model --revision no-such-branch` or pass --revision with one of those")
        XCTAssertTrue(message("test-org/tag-only", nil).contains("revision \"main\" is not in the Hugging Face cache: no \(root)/models--test-org--tag-only/refs/main (refs there: release/2024, v2;"))
        XCTAssertTrue(message("test-org/tiny-model", "gone").hasPrefix("test-org/tiny-model: revision \"gone\" names commit \(c("5")), but the Hugging Face cache has no \(folder)/snapshots/\(c("5"))"))
        XCTAssertTrue(message("test-org/tiny-model", c("6")).hasPrefix("test-org/tiny-model: revision \(c("6")) is a commit, but the Hugging Face cache has no \(folder)/snapshots/\(c("6"))"))
        let broken = message("test-org/tiny-model", "broken")
        let blob = golden["layout"]!["repos"]!.arrayValue![0]["snapshots"]![c("3")]!.arrayValue![2]["blob"]!.stringValue!
        XCTAssertEqual(broken, "test-org/tiny-model (revision broken, commit \(c("3"))): the cached snapshot \(folder)/snapshots/\(c("3")) is incomplete: model-00002-of-00002.safetensors links to blobs/\(blob), which is missing; blobs/\(blob).incomplete holds 17 bytes of an interrupted download; finish the download with `hf download test-org/tiny-model --revision broken`")
        XCTAssertTrue(message("test-org/tiny-model", "interrupted").contains(": model.safetensors is listed in trees/\(c("4")).json but not in the snapshot; blobs/"), message("test-org/tiny-model", "interrupted"))
    }
}
