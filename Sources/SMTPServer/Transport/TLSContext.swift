import COpenSSL
import Foundation
import Glibc

/// The lowest TLS version a listener accepts (`tls.min_version`).
public enum TLSVersion: String, CaseIterable, Sendable, Comparable {
    case tls1_0 = "1.0"
    case tls1_1 = "1.1"
    case tls1_2 = "1.2"
    case tls1_3 = "1.3"

    /// TLS 1.0 and 1.1 have known weaknesses (RFC 8996 deprecates them); they exist only for old devices.
    public var isLegacy: Bool { self < .tls1_2 }

    var openSSLVersion: Int32 {
        switch self {
        case .tls1_0: acsgw_tls1_version()
        case .tls1_1: acsgw_tls1_1_version()
        case .tls1_2: acsgw_tls1_2_version()
        case .tls1_3: acsgw_tls1_3_version()
        }
    }

    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Why the certificate, the key or the TLS settings cannot be used; the text names the file and what to fix.
public struct TLSConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The certificate a context serves, for logs and `check-config`.
public struct CertificateSummary: Sendable, Hashable {
    /// The leaf's subject, one line (`/CN=mail.example.com`).
    public var subject: String
    public var notBefore: Date
    public var notAfter: Date
    /// Certificates in the file: the leaf and its intermediates.
    public var chainLength: Int
}

/// A server TLS configuration: the certificate chain and key from PEM files, the minimum version and the cipher
/// list, as one OpenSSL `SSL_CTX` shared by the connections accepted while it is current. A reload (SIGHUP)
/// builds a new one from the files; connections keep the one they started with (OpenSSL counts references).
///
/// Loading checks what would otherwise surface as handshake failures at the first client: an unreadable file,
/// a file without a PEM certificate or key, an encrypted key, a key that does not match the certificate, a
/// certificate that has expired or is not yet valid.
public final class TLSContext: @unchecked Sendable {
    /// The cipher suites for TLS 1.2 (TLS 1.3 has its own, all strong): forward secrecy and AEAD only, the
    /// "intermediate" list of common server guidance.
    public static let defaultCiphers = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
    /// Added when `tls.min_version` is below 1.2: TLS 1.0 and 1.1 have no AEAD suites, so old devices need
    /// CBC suites with SHA-1, and OpenSSL 3 accepts their SHA-1 handshake signatures only at security level 0.
    static let legacyCiphers = "ECDHE+AES+SHA1:AES+SHA1:@SECLEVEL=0"
    /// Larger than any certificate chain or key; a bigger file is a mistake.
    static let maxFileSize = 1 << 20

    let context: OpaquePointer
    public let certificate: CertificateSummary
    public let minimumVersion: TLSVersion
    /// Problems worth a warning that do not stop the gateway (a key readable by others, a certificate close to
    /// its expiry, a legacy minimum version).
    public let warnings: [String]

    public init(
        certificateFile: String, keyFile: String, minimumVersion: TLSVersion = .tls1_2,
        ciphers: String = TLSContext.defaultCiphers, now: Date = Date()
    ) throws(TLSConfigurationError) {
        var warnings: [String] = []
        let chainPEM = try Self.read(certificateFile, key: "tls.certificate")
        let keyPEM = try Self.read(keyFile, key: "tls.key")
        if let mode = Self.permissions(of: keyFile), mode & 0o077 != 0 {
            warnings.append(
                "tls.key \(keyFile) is readable by group or others (mode \(String(mode, radix: 8))): make it 0600 "
                    + "root, or pass it with LoadCredential=")
        }

        let chain = try Self.certificates(chainPEM, file: certificateFile)
        defer { for certificate in chain { X509_free(certificate) } }
        guard let key = Self.privateKey(keyPEM) else {
            throw TLSConfigurationError(
                "tls.key \(keyFile): no PEM private key found (an encrypted key is not supported: the file itself "
                    + "is the secret, readable by root only)")
        }
        defer { EVP_PKEY_free(key) }
        let summary = try Self.summary(of: chain, file: certificateFile)
        if summary.notAfter < now {
            throw TLSConfigurationError(
                "tls.certificate \(certificateFile): the certificate expired on \(Self.iso8601(summary.notAfter)); "
                    + "renew it, then reload")
        }
        if summary.notBefore > now {
            throw TLSConfigurationError(
                "tls.certificate \(certificateFile): the certificate is not valid before "
                    + "\(Self.iso8601(summary.notBefore)) (check the system clock)")
        }
        if summary.notAfter.timeIntervalSince(now) < 14 * 86_400 {
            warnings.append(
                "tls.certificate \(certificateFile) expires on \(Self.iso8601(summary.notAfter)), in less than 14 days")
        }

        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else {
            throw TLSConfigurationError("TLS: cannot create a context: \(Self.openSSLError())")
        }
        do throws(TLSConfigurationError) {
            guard SSL_CTX_use_certificate(context, chain[0]) == 1 else {
                throw TLSConfigurationError("tls.certificate \(certificateFile): \(Self.openSSLError())")
            }
            for intermediate in chain.dropFirst() where acsgw_ssl_ctx_add1_chain_cert(context, intermediate) != 1 {
                throw TLSConfigurationError("tls.certificate \(certificateFile): \(Self.openSSLError())")
            }
            guard SSL_CTX_use_PrivateKey(context, key) == 1, SSL_CTX_check_private_key(context) == 1 else {
                ERR_clear_error()
                throw TLSConfigurationError(
                    "tls.key \(keyFile) does not match the certificate in tls.certificate \(certificateFile)")
            }
            guard acsgw_ssl_ctx_set_min_proto_version(context, minimumVersion.openSSLVersion) == 1 else {
                throw TLSConfigurationError("tls.min_version \(minimumVersion.rawValue): \(Self.openSSLError())")
            }
            let cipherList = minimumVersion.isLegacy ? "\(ciphers):\(Self.legacyCiphers)" : ciphers
            guard SSL_CTX_set_cipher_list(context, cipherList) == 1 else {
                throw TLSConfigurationError("tls.ciphers \"\(ciphers)\": no cipher of the list is available")
            }
            acsgw_ssl_ctx_set_server_options(context)
            // Memory BIOs: SSL_write takes a whole buffer at once, and buffers are freed between records so an
            // idle connection holds little memory.
            acsgw_ssl_ctx_set_mode(context, acsgw_ssl_mode_release_buffers())
            acsgw_ssl_ctx_set_session_cache_mode(context, acsgw_ssl_sess_cache_server())
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        if minimumVersion.isLegacy {
            warnings.append(
                "tls.min_version \(minimumVersion.rawValue) accepts TLS versions with known weaknesses (RFC 8996); "
                    + "keep it only for devices that cannot do TLS 1.2")
        }
        self.context = context
        self.certificate = summary
        self.minimumVersion = minimumVersion
        self.warnings = warnings
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// A new server-side TLS session of this context; nil when OpenSSL is out of memory.
    func makeSession() -> OpaquePointer? {
        SSL_new(context)
    }

    // MARK: Reading the files

    private static func read(_ path: String, key: String) throws(TLSConfigurationError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw TLSConfigurationError("\(key) \(path): cannot read it: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw TLSConfigurationError("\(key) \(path): cannot read it: \(String(cString: strerror(errno)))")
            }
            contents += chunk[0..<count]
            if contents.count > maxFileSize {
                throw TLSConfigurationError("\(key) \(path): larger than \(maxFileSize) octets; not a PEM file")
            }
        }
        return contents
    }

    private static func permissions(of path: String) -> UInt32? {
        var status = stat()
        return stat(path, &status) == 0 ? UInt32(status.st_mode & 0o777) : nil
    }

    private static func withMemoryBIO<T>(_ bytes: [UInt8], _ body: (OpaquePointer) -> T) -> T? {
        bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
    }

    /// Every certificate in a PEM file, leaf first; the caller frees them.
    private static func certificates(_ pem: [UInt8], file: String) throws(TLSConfigurationError) -> [OpaquePointer] {
        ERR_clear_error()
        let chain: [OpaquePointer] =
            withMemoryBIO(pem) { bio in
                var chain: [OpaquePointer] = []
                while let certificate = acsgw_read_certificate(bio) { chain.append(certificate) }
                return chain
            } ?? []
        ERR_clear_error()  // the end of the file is reported as an error
        guard !chain.isEmpty else {
            throw TLSConfigurationError("tls.certificate \(file): no PEM certificate found (BEGIN CERTIFICATE)")
        }
        return chain
    }

    private static func privateKey(_ pem: [UInt8]) -> OpaquePointer? {
        ERR_clear_error()
        defer { ERR_clear_error() }
        return withMemoryBIO(pem) { acsgw_read_private_key($0) } ?? nil
    }

    private static func summary(of chain: [OpaquePointer], file: String) throws(TLSConfigurationError)
        -> CertificateSummary
    {
        let leaf = chain[0]
        var notBefore: Int64 = 0
        var notAfter: Int64 = 0
        guard let before = X509_get0_notBefore(leaf), let after = X509_get0_notAfter(leaf),
            acsgw_asn1_time_to_epoch(before, &notBefore) == 1, acsgw_asn1_time_to_epoch(after, &notAfter) == 1
        else {
            throw TLSConfigurationError("tls.certificate \(file): the certificate's validity dates cannot be read")
        }
        var subject = [CChar](repeating: 0, count: 512)
        if let name = X509_get_subject_name(leaf) { _ = X509_NAME_oneline(name, &subject, Int32(subject.count)) }
        return CertificateSummary(
            subject: String(decoding: subject.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self),
            notBefore: Date(timeIntervalSince1970: Double(notBefore)),
            notAfter: Date(timeIntervalSince1970: Double(notAfter)), chainLength: chain.count)
    }

    /// `2026-11-28T16:35:36Z`.
    public static func iso8601(_ date: Date) -> String {
        var time = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&time, &parts)
        var text = [CChar](repeating: 0, count: 32)
        _ = strftime(&text, text.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The first error on OpenSSL's queue for this thread, as text, and the queue cleared.
    static func openSSLError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "unknown OpenSSL error" }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
