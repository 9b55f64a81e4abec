import XCTest
@testable import I2QTokenizer
final class PlaceholderTests: XCTestCase {
    func testModuleBuilds() { XCTAssertNotNil(I2QTokenizerModule.self) }
}
