/// The attachment types ACS accepts, with the file extensions that imply them
/// (docs/acs-email-api.md §7.1, from Microsoft's "allowed MIME types" page).
///
/// ACS validates attachments against this list and answers 400 for others unless
/// `x-ms-acsemail-suppress-invalid-attachment: true` is set (§6, §7.1). The gateway uses the table to
/// infer a listed type from a file name when the declared one is not listed (e.g. `application/octet-stream`
/// on `report.pdf`), and to pick an extension for generated attachment names.
public enum AttachmentTypes {
    /// Extension (lower-case, without the dot) → MIME type, exactly the §7.1 table. `.xml` maps to
    /// `application/xml`, the first of its two listed types.
    public static let typeByExtension: [String: String] = [
        "3gp": "video/3gpp", "3g2": "video/3gpp2", "7z": "application/x-7z-compressed",
        "aac": "audio/aac", "avi": "video/x-msvideo", "bmp": "image/bmp",
        "csv": "text/csv", "doc": "application/msword",
        "docm": "application/vnd.ms-word.document.macroEnabled.12",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "eot": "application/vnd.ms-fontobject", "epub": "application/epub+zip",
        "gif": "image/gif", "gz": "application/gzip", "ico": "image/vnd.microsoft.icon",
        "ics": "text/calendar", "jpg": "image/jpeg", "jpeg": "image/jpeg", "json": "application/json",
        "mid": "audio/midi", "midi": "audio/midi", "mp3": "audio/mpeg", "mp4": "video/mp4",
        "mpeg": "video/mpeg", "oga": "audio/ogg", "ogv": "video/ogg",
        "ogx": "application/ogg", "one": "application/onenote", "opus": "audio/opus",
        "otf": "font/otf", "pdf": "application/pdf", "png": "image/png",
        "ppsm": "application/vnd.ms-powerpoint.slideshow.macroEnabled.12",
        "ppsx": "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
        "ppt": "application/vnd.ms-powerpoint",
        "pptm": "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
        "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pub": "application/vnd.ms-publisher",
        "rar": "application/x-rar-compressed", "rpmsg": "application/vnd.ms-outlook", "rtf": "application/rtf",
        "svg": "image/svg+xml", "tar": "application/x-tar", "tif": "image/tiff", "tiff": "image/tiff",
        "ttf": "font/ttf", "txt": "text/plain", "vsd": "application/vnd.visio",
        "wav": "audio/wav", "weba": "audio/webm", "webm": "video/webm",
        "webp": "image/webp", "wma": "audio/x-ms-wma", "wmv": "video/x-ms-wmv",
        "woff": "font/woff", "woff2": "font/woff2", "xls": "application/vnd.ms-excel",
        "xlsb": "application/vnd.ms-excel.sheet.binary.macroEnabled.12",
        "xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xml": "application/xml", "zip": "application/zip",
    ]

    /// Every listed type, lower-cased: MIME types are case-insensitive (RFC 2045 §5.1) while the table
    /// spells some with capitals (`macroEnabled`). `text/xml` is the second type listed for `.xml`.
    public static let allowedTypes: Set<String> = Set(typeByExtension.values.map { $0.lowercased() } + ["text/xml"])

    /// Extensions for types outside the table, used only to name attachments that have no name
    /// (`message/rfc822` parts become `.eml` attachments).
    private static let extraExtensionByType: [String: String] = [
        "message/rfc822": "eml", "message/global": "eml", "text/html": "html", "application/octet-stream": "bin",
        "image/jpg": "jpg", "image/pjpeg": "jpg", "application/x-zip-compressed": "zip",
    ]

    /// Type (lower-case) → the first extension in alphabetical order that the table maps to it, so the
    /// choice is deterministic (`image/jpeg` → `jpeg`, `image/tiff` → `tif`).
    private static let extensionByType: [String: String] = {
        var result = extraExtensionByType
        for (ext, type) in typeByExtension.sorted(by: { $0.key < $1.key }) where result[type.lowercased()] == nil {
            result[type.lowercased()] = ext
        }
        result["image/jpeg"] = "jpg"  // the common spelling, not the alphabetical first
        return result
    }()

    /// Whether ACS lists `contentType` (lower-case, without parameters) as an allowed attachment type.
    public static func isAllowed(_ contentType: String) -> Bool {
        allowedTypes.contains(contentType.lowercased())
    }

    /// The listed type implied by the extension of `fileName`, or nil (no extension, or one not in §7.1).
    public static func inferredType(forFileName fileName: String) -> String? {
        guard let dot = fileName.lastIndex(of: "."), dot != fileName.startIndex else {
            return nil
        }
        let ext = fileName[fileName.index(after: dot)...].lowercased()
        return typeByExtension[ext]
    }

    /// An extension for a generated name: from the table, or `bin` for a type it does not know.
    public static func fileExtension(forType contentType: String) -> String {
        let type = contentType.lowercased()
        if let ext = extensionByType[type] {
            return ext
        }
        return type.hasPrefix("text/") ? "txt" : "bin"
    }
}
