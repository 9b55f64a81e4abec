import Foundation
import I2QCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The local Hugging Face hub cache, read exactly as huggingface_hub 2.4 lays it out (issue 20), and
/// never anything else: no network call is made or implied.
///
///     <root>/models--{org}--{name}/
///         refs/{revision}            a branch or tag name ("main", "v1.0", "refs/pr/1") -> file
///                                    holding the 40-hex commit it points at (no newline)
///         snapshots/{commit}/...     the repo's files at that commit: relative symlinks into blobs/
///         blobs/{etag}               the bytes (sha256 for LFS files); {etag}.incomplete while a
///                                    download runs, and after one is interrupted
///         trees/{commit}.json        (huggingface_hub ≥ 2.4) the commit's file listing
///
/// A revision that is a 40-hex commit names `snapshots/{commit}` directly; any other revision is
/// looked up in `refs/` (snapshot_download(…, local_files_only=True)'s rule). The root comes from the
/// environment as `huggingface_hub.constants.HF_HUB_CACHE` does (`root(environment:)`).
/// Tests/Fixtures/hub-cache/expected.json holds huggingface_hub's own answers on a fixture cache.
public struct HubCache: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    /// The cache `huggingface_hub` uses in this environment.
    public init(environment: [String: String]) { root = Self.root(environment: environment) }

    /// The cache `huggingface_hub` uses in this process's environment.
    public init() { self.init(environment: ProcessInfo.processInfo.environment) }

    /// `huggingface_hub.constants.HF_HUB_CACHE`: `HF_HUB_CACHE`, else the legacy
    /// `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    /// `~/.cache/huggingface/hub`. A variable that is set counts even when empty (as `os.getenv`);
    /// `~` and `$VAR` / `${VAR}` are expanded as `os.path.expanduser` / `expandvars` do, in the same
    /// places and order (HF_HOME once on its own, then again as part of the hub path).
    public static func root(environment env: [String: String]) -> String {
        let defaultHome = PythonPath.join(PythonPath.expandUser("~", env), ".cache")
        let hfHome = PythonPath.expandVars(PythonPath.expandUser(
            env["HF_HOME"] ?? PythonPath.join(env["XDG_CACHE_HOME"] ?? defaultHome, "huggingface"), env), env)
        let legacy = env["HUGGINGFACE_HUB_CACHE"] ?? PythonPath.join(hfHome, "hub")
        return PythonPath.expandVars(PythonPath.expandUser(env["HF_HUB_CACHE"] ?? legacy, env), env)
    }

    /// Whether `s` has the form of a Hub model id `namespace/name` (huggingface_hub's
    /// `validate_repo_id` with a namespace): each part 1…96 of `A-Z a-z 0-9 _ . -`, starting and
    /// ending with a letter, digit or `_`; no `--` or `..`; not ending in `.git`. So `./model` or
    /// `../x/y` are never taken for repo ids.
    public static func isRepoID(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !s.contains("--"), !s.contains(".."), !s.hasSuffix(".git") else { return false }
        func word(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber || c == "_") }
        return parts.allSatisfy { p in
            guard let first = p.first, let last = p.last, p.count <= 96 else { return false }
            return word(first) && word(last) && p.allSatisfy { word($0) || $0 == "." || $0 == "-" }
        }
    }

    /// `models--{org}--{name}` (huggingface_hub's `repo_folder_name` for a model repo).
    public static func folderName(repoID: String) -> String {
        (["models"] + repoID.split(separator: "/", omittingEmptySubsequences: false).map(String.init)).joined(separator: "--")
    }

    public func repoFolder(_ repoID: String) -> String { PythonPath.join(root, Self.folderName(repoID: repoID)) }

    /// The refs of a cached repo, `name -> commit`, sorted by name (nested ones as `refs/pr/1`).
    public func refs(of repoID: String) -> [(name: String, commit: String)] {
        let dir = repoFolder(repoID) + "/refs"
        return HubFiles.walk(dir).compactMap { name in
            HubFiles.readText(dir + "/" + name).map { (name, $0) }
        }
    }

    /// The commits that have a snapshot folder, sorted.
    public func snapshotCommits(of repoID: String) -> [String] {
        let dir = repoFolder(repoID) + "/snapshots"
        return ((try? FileSystem.listDirectory(dir)) ?? []).filter { FileSystem.isDirectory(dir + "/" + $0) }  // none: no snapshots
    }

    /// The snapshot folder `revision` (default "main") names, checked complete. Throws
    /// `HubCacheError` naming what was looked for and where when the repo, the revision or the
    /// snapshot is not there, or when the snapshot is incomplete (an interrupted download).
    public func resolve(repoID: String, revision: String? = nil) throws -> HubSnapshot {
        let rev = revision ?? "main"
        try Self.checkRevision(rev)
        let folder = repoFolder(repoID)
        guard FileSystem.isDirectory(folder) else {
            throw HubCacheError.notCached(repoID: repoID, root: root, folder: Self.folderName(repoID: repoID), revision: revision)
        }
        let commit: String
        if Self.isCommitHash(rev) {
            commit = rev
        } else {
            let refPath = folder + "/refs/" + rev
            guard !FileSystem.isDirectory(refPath), let c = HubFiles.readText(refPath) else {
                throw HubCacheError.revisionNotFound(repoID: repoID, revision: rev, folder: folder,
                                                     refs: refs(of: repoID).map(\.name), snapshots: snapshotCommits(of: repoID))
            }
            commit = c
        }
        let snapshot = folder + "/snapshots/" + commit
        guard !commit.isEmpty, FileSystem.isDirectory(snapshot) else {
            throw HubCacheError.snapshotMissing(repoID: repoID, revision: rev, commit: commit, folder: folder,
                                                viaRef: !Self.isCommitHash(rev), snapshots: snapshotCommits(of: repoID))
        }
        let incomplete = Self.incompleteFiles(snapshot: snapshot, folder: folder, commit: commit)
        if !incomplete.isEmpty {
            throw HubCacheError.incomplete(repoID: repoID, revision: rev, commit: commit, snapshot: snapshot, files: incomplete)
        }
        return HubSnapshot(repoID: repoID, revision: rev, commit: commit, path: snapshot)
    }

    static func isCommitHash(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// A revision is a branch, tag or commit name: relative, no empty, `.` or `..` component (it
    /// becomes a path under refs/ or snapshots/).
    static func checkRevision(_ rev: String) throws {
        let parts = rev.split(separator: "/", omittingEmptySubsequences: false)
        guard !rev.isEmpty, !rev.contains("\0"), parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw HubCacheError.badRevision(rev)
        }
    }

    /// Files of the snapshot that an interrupted download left unusable: a symlink whose blob is
    /// missing (whatever the file), and a file the commit's tree listing (trees/{commit}.json) names
    /// that is absent while its blob is still `.incomplete`. A listed file absent with no trace of a
    /// download is not counted: `hf download --include` leaves files out on purpose (huggingface_hub's
    /// `snapshot_download(local_files_only=True)` without patterns calls that snapshot incomplete;
    /// i2q opens it, and the model directory reports any file it needs itself).
    static func incompleteFiles(snapshot: String, folder: String, commit: String) -> [HubCacheError.IncompleteFile] {
        var out: [HubCacheError.IncompleteFile] = []
        var seen = Set<String>()
        for name in HubFiles.walk(snapshot, includeBrokenLinks: true) where !FileSystem.exists(snapshot + "/" + name) {
            let target = HubFiles.linkTarget(snapshot + "/" + name)
            let blob = target.map { FileSystem.basename($0) }
            out.append(.init(path: name, blob: blob, partialBytes: blob.flatMap { FileSystem.fileSize(folder + "/blobs/" + $0 + ".incomplete") }, listedOnly: false))
            seen.insert(name)
        }
        let treePath = folder + "/trees/" + commit + ".json"
        if let bytes = HubFiles.readBytes(treePath), let tree = try? JSONParser.parse(bytes, source: treePath),  // unreadable listing: ignored, as huggingface_hub does
           tree["format_version"]?.intValue == 1, let files = tree["files"]?.objectEntries {
            for (name, info) in files where !seen.contains(name) && !FileSystem.isRegularFile(snapshot + "/" + name) {
                for id in [info["lfs_sha256"]?.stringValue, info["blob_id"]?.stringValue].compactMap({ $0 }) {
                    guard !id.contains("/"), let n = FileSystem.fileSize(folder + "/blobs/" + id + ".incomplete") else { continue }
                    out.append(.init(path: name, blob: id, partialBytes: n, listedOnly: true))
                    break
                }
            }
        }
        return out.sorted { $0.path < $1.path }
    }
}

/// One resolved repo id: which revision was asked for, the commit it named, and the folder.
public struct HubSnapshot: Sendable, Equatable {
    public let repoID: String
    public let revision: String
    public let commit: String
    public let path: String

    public init(repoID: String, revision: String, commit: String, path: String) {
        self.repoID = repoID; self.revision = revision; self.commit = commit; self.path = path
    }

    /// One line for stderr: where the repo id was found.
    public var note: String {
        "\(repoID): revision \(revision)\(revision == commit ? "" : " = commit \(commit)") from the Hugging Face cache: \(path)"
    }
}

/// A verb's model inputs: a local path (always preferred when it exists), or a Hub repo id read from
/// the local cache.
public enum ModelInput {
    public struct Resolved: Sendable, Equatable {
        /// The path to open: the input itself, or the snapshot folder of a repo id.
        public let path: String
        public let snapshot: HubSnapshot?
    }

    /// Resolves each input. An input is a local path when something exists there (even a dangling
    /// symlink: the opener then says what is wrong with it); otherwise, when it has the form
    /// `org/name`, a repo id in `cache` at `revision` (default main); otherwise it is returned as is
    /// and the opener reports the missing path. A `revision` with no repo id among the inputs is an
    /// error (it would be silently ignored).
    public static func resolve(_ inputs: [String], revision: String?, cache: HubCache) throws -> [Resolved] {
        let out = try inputs.map { input -> Resolved in
            if HubFiles.lexists(input) || !HubCache.isRepoID(input) { return Resolved(path: input, snapshot: nil) }
            let s = try cache.resolve(repoID: input, revision: revision)
            return Resolved(path: s.path, snapshot: s)
        }
        if let revision, !out.contains(where: { $0.snapshot != nil }) {
            throw HubCacheError.revisionWithoutRepoID(revision: revision, inputs: inputs)
        }
        return out
    }
}

public enum HubCacheError: I2QError, Equatable {
    public struct IncompleteFile: Sendable, Equatable {
        /// The file's path in the repo.
        public let path: String
        /// The blob it links to (or, listed only, would link to).
        public let blob: String?
        /// Size of `blobs/{blob}.incomplete`, when there is one.
        public let partialBytes: Int?
        /// The file is absent from the snapshot and known from trees/{commit}.json only.
        public let listedOnly: Bool
    }

    case notCached(repoID: String, root: String, folder: String, revision: String?)
    case revisionNotFound(repoID: String, revision: String, folder: String, refs: [String], snapshots: [String])
    case snapshotMissing(repoID: String, revision: String, commit: String, folder: String, viaRef: Bool, snapshots: [String])
    case incomplete(repoID: String, revision: String, commit: String, snapshot: String, files: [IncompleteFile])
    case badRevision(String)
    case revisionWithoutRepoID(revision: String, inputs: [String])

    static func download(_ repoID: String, _ revision: String?) -> String {
        "`hf download \(repoID)\(revision.map { " --revision \($0)" } ?? "")`"
    }

    static func list(_ xs: [String]) -> String { xs.isEmpty ? "none" : xs.joined(separator: ", ") }

    public var description: String {
        switch self {
        case let .notCached(id, root, folder, rev):
            return "\(id): not a local path, and not in the Hugging Face cache at \(root) (\(folder)); download it with \(Self.download(id, rev)) or pass a directory"
        case let .revisionNotFound(id, rev, folder, refs, snaps):
            return "\(id): revision \"\(rev)\" is not in the Hugging Face cache: no \(folder)/refs/\(rev) (refs there: \(Self.list(refs)); snapshots: \(Self.list(snaps))); download it with \(Self.download(id, rev)) or pass --revision with one of those"
        case let .snapshotMissing(id, rev, commit, folder, viaRef, snaps):
            let what = viaRef ? "revision \"\(rev)\" names commit \(commit), but" : "revision \(rev) is a commit, but"
            return "\(id): \(what) the Hugging Face cache has no \(folder)/snapshots/\(commit) (snapshots there: \(Self.list(snaps))); download it with \(Self.download(id, rev))"
        case let .incomplete(id, rev, commit, snapshot, files):
            let each = files.map { f -> String in
                let partial = f.partialBytes.map { "; blobs/\(f.blob ?? "?").incomplete holds \($0) bytes of an interrupted download" } ?? ""
                return f.listedOnly
                    ? "\(f.path) is listed in trees/\(commit).json but not in the snapshot\(partial)"
                    : "\(f.path) links to blobs/\(f.blob ?? "?"), which is missing\(partial)"
            }
            return "\(id) (revision \(rev), commit \(commit)): the cached snapshot \(snapshot) is incomplete: \(each.joined(separator: "; ")); finish the download with \(Self.download(id, rev == "main" ? nil : rev))"
        case let .badRevision(rev):
            return "--revision \"\(rev)\" is not a branch, tag or commit name (no empty, \".\" or \"..\" path parts)"
        case let .revisionWithoutRepoID(rev, inputs):
            return "--revision \(rev) applies to Hugging Face repo ids (org/name); \(inputs.joined(separator: ", ")) \(inputs.count == 1 ? "is a local path" : "are local paths")"
        }
    }
}

/// Python's `os.path` functions the cache root is computed with (posixpath, Python 3.11).
enum PythonPath {
    /// `os.path.join(a, b)` for a relative `b`.
    static func join(_ a: String, _ b: String) -> String {
        a.isEmpty || a.hasSuffix("/") ? a + b : a + "/" + b
    }

    /// `os.path.expanduser`: a leading `~` (HOME, else the password database) or `~user`.
    static func expandUser(_ path: String, _ env: [String: String]) -> String {
        guard path.hasPrefix("~") else { return path }
        let chars = Array(path)
        let i = chars.dropFirst().firstIndex(of: "/") ?? chars.count
        var home: String
        if i == 1 {
            if let h = env["HOME"] {
                home = h
            } else {
                guard let pw = getpwuid(getuid()), let d = pw.pointee.pw_dir else { return path }
                home = String(cString: d)
            }
        } else {
            guard let pw = getpwnam(String(chars[1..<i])), let d = pw.pointee.pw_dir else { return path }
            home = String(cString: d)
        }
        while home.hasSuffix("/") { home.removeLast() }
        let out = home + String(chars[i...])
        return out.isEmpty ? "/" : out
    }

    /// `os.path.expandvars`: `$name` (ASCII word characters) and `${name}` replaced by the variable's
    /// value when it is set; anything else is left as written.
    static func expandVars(_ path: String, _ env: [String: String]) -> String {
        guard path.contains("$") else { return path }
        var s = Array(path.unicodeScalars)
        func word(_ c: Unicode.Scalar) -> Bool { c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_") }
        var i = 0
        while i < s.count {
            guard s[i] == "$", i + 1 < s.count else { i += 1; continue }
            var j = i + 1
            let name: String
            if word(s[j]) {
                while j < s.count && word(s[j]) { j += 1 }
                name = String(String.UnicodeScalarView(s[(i + 1)..<j]))
            } else if s[j] == "{", let close = s[(j + 1)...].firstIndex(of: "}") {
                name = String(String.UnicodeScalarView(s[(j + 1)..<close]))
                j = close + 1
            } else {
                i += 1
                continue
            }
            guard let value = env[name] else { i = j; continue }
            let v = Array(value.unicodeScalars)
            s.replaceSubrange(i..<j, with: v)
            i += v.count
        }
        return String(String.UnicodeScalarView(s))
    }
}

/// Small file-system reads of the cache (symlinks seen as symlinks).
enum HubFiles {
    /// Whether anything, a dangling symlink included, is at `path`.
    static func lexists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    static func linkTarget(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }

    /// A ref file's text, as huggingface_hub reads it (`open(...).read()`: nothing stripped).
    static func readText(_ path: String) -> String? {
        guard FileSystem.exists(path), !FileSystem.isDirectory(path) else { return nil }
        return readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every non-directory under `dir`, as "/"-separated relative paths, sorted; symlinked folders are
    /// not followed. Dangling symlinks are listed only with `includeBrokenLinks`.
    static func walk(_ dir: String, includeBrokenLinks: Bool = false) -> [String] {
        var out: [String] = []
        func visit(_ rel: String) {
            let full = rel.isEmpty ? dir : dir + "/" + rel
            for name in (try? FileSystem.listDirectory(full)) ?? [] {  // unreadable folder: nothing listed
                let r = rel.isEmpty ? name : rel + "/" + name
                let p = dir + "/" + r
                if isSymlink(p) {
                    if FileSystem.exists(p) { if !FileSystem.isDirectory(p) { out.append(r) } } else if includeBrokenLinks { out.append(r) }
                } else if FileSystem.isDirectory(p) {
                    visit(r)
                } else {
                    out.append(r)
                }
            }
        }
        visit("")
        return out.sorted()
    }
}

extension FileSystem {
    /// Whether `path` is (or links to) a regular file (`os.path.isfile`).
    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
}
