import XCTest
@testable import I2QImage
final class ImagePlaceholderTests: XCTestCase {
    func testModuleBuilds() { XCTAssertNotNil(I2QImageModule.self) }
}
