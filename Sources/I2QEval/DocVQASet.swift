#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import I2QCore

/// One question of a DocVQA-format set (the official `val_v1.0.json` layout, https://www.docvqa.org).
public struct DocVQAItem: Sendable, Equatable {
    public let questionId: Int
    public let question: String
    /// Absolute (or as given, when the set directory was relative) path of the page image.
    public let imagePath: String
    /// Ground-truth answers (several where the set lists several); empty for the official test split.
    public let answers: [String]
    /// The page's text (our extension `document_text`, for text-only models); nil when the set has none.
    public let documentText: String?
    public let docId: Int?

    public init(questionId: Int, question: String, imagePath: String, answers: [String], documentText: String?, docId: Int?) {
        self.questionId = questionId
        self.question = question
        self.imagePath = imagePath
        self.answers = answers
        self.documentText = documentText
        self.docId = docId
    }
}

public enum DocVQAError: I2QError {
    case notADirectory(String)
    case noJSON(directory: String)
    case severalJSON(directory: String, names: [String])
    case notAnObject(file: String)
    case missingKey(file: String, index: Int?, key: String)
    case badValue(file: String, index: Int, key: String, expected: String)
    case imageNotFound(file: String, questionId: Int, image: String)
    case empty(file: String)

    public var description: String {
        switch self {
        case let .notADirectory(d):
            return "\(d) is not a directory; --docvqa takes a DocVQA-format directory (val_v1.0.json beside documents/), e.g. Tests/Fixtures/docvqa-mini"
        case let .noJSON(d):
            return "\(d) has no *.json file; a DocVQA-format directory holds the annotation file (e.g. val_v1.0.json) beside documents/"
        case let .severalJSON(d, names):
            return "\(d) has several JSON files (\(names.joined(separator: ", "))) and no val_v1.0.json; keep only the annotation file in the directory"
        case let .notAnObject(f):
            return "\(f): the top level must be an object with a \"data\" array (the DocVQA layout)"
        case let .missingKey(f, i, k):
            if let i { return "\(f): item \(i) of \"data\" has no \"\(k)\" key; every item needs questionId, question, image and answers" }
            return "\(f): no \"\(k)\" key at the top level; a DocVQA annotation file is {\"data\": [{questionId, question, image, answers}]}"
        case let .badValue(f, i, k, e):
            return "\(f): item \(i) of \"data\": \"\(k)\" must be \(e)"
        case let .imageNotFound(f, q, img):
            return "\(f): questionId \(q): image \(img) not found; put the page images (documents/) beside the JSON file"
        case let .empty(f):
            return "\(f): \"data\" is empty; the set needs at least one question"
        }
    }
}

/// A DocVQA-format directory: one annotation JSON (`val_v1.0.json` preferred) whose `data` items name
/// their page images relative to the directory. The shipped set is Tests/Fixtures/docvqa-mini
/// (scripts/fixtures/make_docvqa_set.py); the official DocVQA validation set has the same layout.
public struct DocVQASet: Sendable {
    public let directory: String
    /// The annotation file that was read.
    public let file: String
    public let items: [DocVQAItem]

    public init(directory: String, file: String, items: [DocVQAItem]) {
        self.directory = directory
        self.file = file
        self.items = items
    }

    /// Reads DIR/val_v1.0.json, or the one *.json file in DIR. Answers may be missing (the official
    /// test split has none): then `answers` is empty and ANLS cannot be computed for that item.
    public static func load(directory: String) throws -> DocVQASet {
        guard FileSystem.isDirectory(directory) else {
            if FileSystem.exists(directory) { throw DocVQAError.notADirectory(directory) }
            throw FileSystem.whyMissing(directory)
        }
        let dir = absolutePath(directory)
        let names = try FileSystem.listDirectory(dir).filter { $0.hasSuffix(".json") }
        let name: String
        if names.contains("val_v1.0.json") {
            name = "val_v1.0.json"
        } else if names.count == 1 {
            name = names[0]
        } else if names.isEmpty {
            throw DocVQAError.noJSON(directory: directory)
        } else {
            throw DocVQAError.severalJSON(directory: directory, names: names)
        }
        let file = dir + "/" + name
        let root = try JSONParser.parse(try FileSystem.readFile(file), source: file)
        guard root.objectEntries != nil else { throw DocVQAError.notAnObject(file: file) }
        guard let data = root["data"] else { throw DocVQAError.missingKey(file: file, index: nil, key: "data") }
        guard let arr = data.arrayValue else { throw DocVQAError.notAnObject(file: file) }
        guard !arr.isEmpty else { throw DocVQAError.empty(file: file) }
        var items: [DocVQAItem] = []
        items.reserveCapacity(arr.count)
        for (i, v) in arr.enumerated() {
            guard v.objectEntries != nil else { throw DocVQAError.badValue(file: file, index: i, key: "data[\(i)]", expected: "an object") }
            func need(_ k: String) throws -> JSONValue {
                guard let x = v[k], x != .null else { throw DocVQAError.missingKey(file: file, index: i, key: k) }
                return x
            }
            guard let qid = try need("questionId").intValue else {
                throw DocVQAError.badValue(file: file, index: i, key: "questionId", expected: "an integer")
            }
            guard let question = try need("question").stringValue else {
                throw DocVQAError.badValue(file: file, index: i, key: "question", expected: "a string")
            }
            guard let image = try need("image").stringValue else {
                throw DocVQAError.badValue(file: file, index: i, key: "image", expected: "a string (a path relative to the JSON file)")
            }
            var answers: [String] = []
            if let a = v["answers"], a != .null {
                guard let list = a.arrayValue else {
                    throw DocVQAError.badValue(file: file, index: i, key: "answers", expected: "an array of strings")
                }
                for x in list {
                    guard let s = x.stringValue else {
                        throw DocVQAError.badValue(file: file, index: i, key: "answers", expected: "an array of strings")
                    }
                    answers.append(s)
                }
            }
            var text: String? = nil
            if let t = v["document_text"], t != .null {
                guard let s = t.stringValue else {
                    throw DocVQAError.badValue(file: file, index: i, key: "document_text", expected: "a string")
                }
                text = s
            }
            let docId = v["docId"]?.intValue
            let path = image.hasPrefix("/") ? image : dir + "/" + image
            guard FileSystem.exists(path) else { throw DocVQAError.imageNotFound(file: file, questionId: qid, image: path) }
            items.append(DocVQAItem(questionId: qid, question: question, imagePath: path, answers: answers,
                                    documentText: text, docId: docId))
        }
        return DocVQASet(directory: dir, file: file, items: items)
    }

    /// `samples` items chosen by a seeded Fisher–Yates shuffle (SplitMix64), returned in the set's
    /// order; all items when `samples` ≤ 0 or ≥ the set's size. Same (set, samples, seed) → same items.
    public func select(samples: Int, seed: UInt64) -> [DocVQAItem] {
        EvalRandom.select(samples, of: items.count, seed: seed).map { items[$0] }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator for reproducible sample selection.
public struct EvalRandom {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `samples` of the indices 0..<n chosen by a seeded Fisher–Yates shuffle, in increasing order;
    /// all of them when `samples` ≤ 0 or ≥ n.
    public static func select(_ samples: Int, of n: Int, seed: UInt64) -> [Int] {
        var idx = Array(0..<n)
        guard samples > 0, samples < n else { return idx }
        var rng = EvalRandom(seed: seed)
        for i in stride(from: n - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return idx.prefix(samples).sorted()
    }
}

/// `path` made absolute against the current directory (no symlink resolution).
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path }
    var buf = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buf, buf.count) != nil else { return path }
    let cwd = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    var p = path
    while p.hasPrefix("./") { p.removeFirst(2) }
    if p.hasSuffix("/") { p.removeLast() }
    return p.isEmpty || p == "." ? cwd : cwd + "/" + p
}
