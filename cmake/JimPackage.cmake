# The Debian package, built by CPack's DEB generator: `scripts/package.sh` gives
# jimd_VERSION_amd64.deb. It holds the default install component (usr/sbin/jimd, usr/bin/jim)
# and the `deb` component below (not installed by a plain `cmake --install`):
#   /etc/jimd/jimd.conf              conffile: config/jimd.conf with data-dir = /var/lib/jimd and
#                                    log-dir = /var/log/jimd set
#   /lib/systemd/system/jimd.service packaging/jimd.service (sandboxed, Type=notify)
#   usr/share/man/man{1,8}/*.gz      the man pages, gzip -9n
#   usr/share/doc/jimd/copyright, changelog.gz
# Maintainer scripts (packaging/deb/): the jimd system user, /var/lib/jimd and /var/log/jimd,
# the service enabled and started when systemd runs, purge removing the data and logs.
# `Depends` comes from dpkg-shlibdeps (plus adduser for postinst). packaging/README.md lists
# the lintian tags left and why.
set(jim_deb_dir ${CMAKE_BINARY_DIR}/deb)
file(MAKE_DIRECTORY ${jim_deb_dir})

# The packaged configuration: the example with the service's directories set.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/config/jimd.conf)
file(READ ${PROJECT_SOURCE_DIR}/config/jimd.conf jim_conf)
foreach(pair "# data-dir = ./data|data-dir = /var/lib/jimd" "# log-dir = ./logs|log-dir = /var/log/jimd")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 from)
  list(GET pair 1 to)
  string(FIND "${jim_conf}" "${from}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "config/jimd.conf has no line '${from}' (cmake/JimPackage.cmake sets it)")
  endif()
  string(REPLACE "${from}" "${to}" jim_conf "${jim_conf}")
endforeach()
string(REPLACE "Start with: jimd -c config/jimd.conf"
               "Installed by the jimd package; the service runs jimd -c /etc/jimd/jimd.conf"
               jim_conf "${jim_conf}")
file(WRITE ${jim_deb_dir}/jimd.conf.new "${jim_conf}")
configure_file(${jim_deb_dir}/jimd.conf.new ${jim_deb_dir}/jimd.conf COPYONLY)

# Compressed documentation, as Debian policy 12.3 and 12.1 want it (-n: reproducible).
set(jim_gz_inputs ${PROJECT_SOURCE_DIR}/docs/man/jimd.8 ${PROJECT_SOURCE_DIR}/docs/man/jim.1
                  ${PROJECT_SOURCE_DIR}/packaging/changelog)
set(jim_gz_outputs)
foreach(in ${jim_gz_inputs})
  get_filename_component(name ${in} NAME)
  add_custom_command(OUTPUT ${jim_deb_dir}/${name}.gz
                     COMMAND sh -c "gzip -9n -c \"$0\" > \"$1\"" ${in} ${jim_deb_dir}/${name}.gz
                     DEPENDS ${in} VERBATIM)
  list(APPEND jim_gz_outputs ${jim_deb_dir}/${name}.gz)
endforeach()
add_custom_target(jim_deb_files ALL DEPENDS ${jim_gz_outputs})

install(FILES ${jim_deb_dir}/jimd.conf DESTINATION /etc/jimd COMPONENT deb EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/jimd.service DESTINATION /lib/systemd/system
        COMPONENT deb EXCLUDE_FROM_ALL)
install(FILES ${jim_deb_dir}/jimd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8 COMPONENT deb
        EXCLUDE_FROM_ALL)
install(FILES ${jim_deb_dir}/jim.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT deb
        EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/copyright ${jim_deb_dir}/changelog.gz
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/jimd COMPONENT deb EXCLUDE_FROM_ALL)

install(FILES ${PROJECT_SOURCE_DIR}/packaging/lintian-overrides
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides RENAME jimd COMPONENT deb
        EXCLUDE_FROM_ALL)

# CPack installs without first building every target (tests, bench): `make install` and
# CPack's preinstall step then build nothing; scripts/package.sh builds jimd, jim and
# jim_deb_files itself.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME jimd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "jimd developers <jimd@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "chat daemon speaking JIM (JSON Instant Messaging)")
# Lines of at most 80 characters (lintian: extended-description-line-too-long); CPack indents.
string(JOIN "\n" CPACK_PACKAGE_DESCRIPTION
  "jimd is an asynchronous chat server: accounts with salted slow password"
  "hashes, rooms with passwords, invitations, private messages queued for"
  "offline users, and history, kept in a journal and snapshots."
  "Clients speak newline-delimited JSON over TCP or TLS, or use the bundled"
  "web client over WebSocket; the terminal client jim is included."
  "This package runs jimd as a sandboxed systemd service (Type=notify with a"
  "watchdog) with Prometheus metrics and a health check on its HTTP port.")
# The options only apply to the files of the package, not to the build (the binaries of the
# normal build are packaged, stripped).
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
    GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL Unspecified deb)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_NAME jimd)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/deb/conffiles ${PROJECT_SOURCE_DIR}/packaging/deb/postinst
    ${PROJECT_SOURCE_DIR}/packaging/deb/prerm ${PROJECT_SOURCE_DIR}/packaging/deb/postrm)
include(CPack)
